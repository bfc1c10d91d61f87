"""The web console: server-rendered pages under `/console` (templates in `console/`)."""

from lorafaas.console.wiring import setup_console

__all__ = ["setup_console"]
