"""Serving the application with errors of the HTTP layer as JSON too.

aiohttp answers a request it cannot parse (a header line too long, too many headers, a
malformed request line) itself, in text/plain, before any middleware runs. The request
handler here renders those in the API's JSON shape; `PlatformRunner` serves an application
with it, and `run_platform` replaces `web.run_app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from lorafaas.controller.middleware import HTTP_MESSAGES, ErrorInfo, ErrorRenderer, openwhisk_error


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers in JSON."""

    render: ErrorRenderer = staticmethod(openwhisk_error)  # type: ignore[assignment]

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer (it logs, and refuses once a response is under way), as JSON."""
        super().handle_error(request, status, exc, message)
        if status >= 500:
            text = "Internal server error."
        elif message:
            text = f"The request was malformed: {message}"
        else:
            text = HTTP_MESSAGES.get(status, "The request was malformed.")
        response = self.render(ErrorInfo(status, text, uuid.uuid4().hex))
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """A low-level server whose connections answer parse errors in JSON."""

    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class PlatformRunner(web.AppRunner):
    """An AppRunner serving the application through `JsonErrorServer`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return JsonErrorServer(server.request_handler, request_factory=server.request_factory,
                               handler_cancellation=server.handler_cancellation,
                               loop=server._loop, **server._kwargs)


async def _serve(app: web.Application, host: str, port: int,
                 say: Callable[[str], Any]) -> None:
    runner = PlatformRunner(app, handle_signals=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        say(f"======== Running on http://{host}:{port} ========\n(Press CTRL+C to quit)")
        await asyncio.Event().wait()  # until SIGINT or SIGTERM raises GracefulExit
    finally:
        await runner.cleanup()


def run_platform(app: web.Application, host: str, port: int,
                 say: Callable[[str], Any] = print) -> None:
    """Serve until SIGINT or SIGTERM, then clean the application up (as `web.run_app`)."""
    loop = asyncio.new_event_loop()
    main = loop.create_task(_serve(app, host, port, say))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
