"""The owner's Python code in a container: import its `__main__.py`, call its entry point,
and shape what it returns as OpenWhisk's Python runtime does.

- The code's folder is put first on `sys.path` (a zip's other modules import as they would
  beside `__main__.py`) and `__main__.py` is imported once, at /init; an import that fails,
  or no callable of the entry point's name, fails the init.
- Each /run's fields other than `value` become `__OW_<FIELD>` environment variables
  (`__OW_ACTIVATION_ID`, `__OW_NAMESPACE`, `__OW_ACTION_NAME`, `__OW_DEADLINE`).
- An exception is an application error: `{"error": str(exception)}`, its traceback on
  stderr (the activation's logs), as OpenWhisk's Python launcher writes it.
- A result that is not a dictionary (or not JSON) is an action developer error: `{"error":
  "The action did not return a dictionary."}`, as OpenWhisk's action proxy answers it.

No torch here: a `python:3` container imports this and aiohttp only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAIN_FILE = "__main__.py"
NOT_A_DICTIONARY = "The action did not return a dictionary."
_MODULE_NAME = "__action_main__"


class UserCodeError(Exception):
    """The owner's code cannot be loaded (the message says why)."""


@dataclass(frozen=True)
class Outcome:
    """What one call of the entry point gave: the activation's result, and whether it is
    an action developer error (OpenWhisk's status 2) rather than success or application
    error."""

    result: dict[str, Any]
    developer_error: bool = False


def load_entry(folder: Path, main: str = "main") -> Callable[..., Any]:
    """Import `folder/__main__.py` and return its function named `main`."""
    path = folder / MAIN_FILE
    if not path.is_file():
        raise UserCodeError(f"the action's code has no {MAIN_FILE}")
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{MAIN_FILE} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as error:  # a syntax error, a failed import, a sys.exit at import
        traceback.print_exc()
        raise UserCodeError(f"{MAIN_FILE} failed to load: "
                            f"{error.__class__.__name__}: {error}") from error
    entry = getattr(module, main, None)
    if not callable(entry):
        raise UserCodeError(f"the action's code has no function {main!r}")
    return entry


def apply_run_env(body: dict[str, Any]) -> None:
    """OpenWhisk's `__OW_*` variables from a /run body's fields other than `value`."""
    for key, value in body.items():
        if key != "value" and isinstance(value, (str, int, float)) \
                and not isinstance(value, bool):
            os.environ[f"__OW_{key.upper()}"] = str(value)


def call_entry(entry: Callable[..., Any], args: dict[str, Any], *extra: Any) -> Outcome:
    """Call the entry point with the parameters (and `extra`, a handler's `llm`)."""
    try:
        result = entry(args, *extra)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the owner's code, any error
        traceback.print_exc()
        return Outcome({"error": str(error)})
    if not isinstance(result, dict):
        return Outcome({"error": NOT_A_DICTIONARY}, developer_error=True)
    try:
        json.dumps(result)
    except (TypeError, ValueError) as error:
        print(f"the action's result is not JSON: {error}", file=sys.stderr)
        return Outcome({"error": NOT_A_DICTIONARY}, developer_error=True)
    return Outcome(result)
