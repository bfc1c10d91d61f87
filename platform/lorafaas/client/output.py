"""What a client verb hands back to be printed: wsk's text, or JSON with `--json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class CommandError(Exception):
    """A verb failed; the message is printed as `error: <message>` and the exit code is 1."""


@dataclass(frozen=True)
class Output:
    """One thing to print: `text` as wsk prints it, `data` for `--json` (None: nothing).

    A failed output (a blocking invoke whose action failed, say) goes to stderr and makes
    the command exit non-zero, as wsk does.
    """

    text: str
    data: Any = None
    failed: bool = False


def wsk_json(value: Any) -> str:
    """JSON as wsk prints it: four-space indent, non-ASCII kept."""
    return json.dumps(value, indent=4, ensure_ascii=False)
