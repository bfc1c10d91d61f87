"""Regular expressions from adapter configs, matched in linear time (RE2, no backtracking).

peft matches a string `target_modules` (and `exclude_modules`) with Python's `re`, which
backtracks: one crafted pattern can take minutes of CPU, and `re` holds the GIL, so a
thread cannot be stopped. Validation matches them with RE2 instead, whose time is linear in
the input, and the stored config names the matched modules outright (see
`config.normalized_config`), so no pattern from a user is ever run by Python's `re`.
"""

from __future__ import annotations

import re
from typing import Any

import re2

from lorafaas.errors import AdapterRejected

# RE2 refuses a pattern whose compiled program would need more memory than this (a pattern
# such as `(a{1000}){1000}`); the module names it is matched against are short.
_MAX_PROGRAM_BYTES = 8 << 20
_MAX_PATTERN_CHARS = 4096


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the client's error, not ours
    options.max_mem = _MAX_PROGRAM_BYTES
    return options


class Pattern:
    """A user's regular expression, checked to mean the same to RE2 and to Python's `re`."""

    def __init__(self, pattern: str, field: str) -> None:
        self.pattern = pattern
        if len(pattern) > _MAX_PATTERN_CHARS:
            raise AdapterRejected(f"{field} is a regular expression of {len(pattern)} "
                                  f"characters; at most {_MAX_PATTERN_CHARS} are accepted")
        try:
            re.compile(pattern)  # parsing is linear; only matching backtracks
        except (re.error, RecursionError, OverflowError) as error:
            raise AdapterRejected(f"{field} {pattern!r} is not a valid regular expression: "
                                  f"{error}") from error
        try:
            self._compiled = re2.compile(pattern, _options())
        except re2.error as error:
            raise AdapterRejected(
                f"{field} {pattern!r} uses a regular expression feature that cannot be "
                f"matched in bounded time (backreferences, lookaround, or too large a "
                f"repetition): {_message(error)}") from error

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of `text` matches (as peft's `re.fullmatch`)."""
        return self._compiled.fullmatch(text) is not None


def _message(error: Exception) -> str:
    detail = error.args[0] if error.args else error
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
