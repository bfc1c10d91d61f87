"""Reading request bodies and query parameters, with 400s that name the problem.

Every number is bounded to what its database column holds (a signed 64-bit integer at
most) and given in ASCII digits: `int()` takes `²` for some inputs and `٣` for others.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from lorafaas.controller.middleware import storable_text
from lorafaas.errors import BadRequest
from lorafaas.names import ENTITY_NAME, MAX_NAME_LENGTH, QualifiedName, check_entity_name

MAX_JSON_DEPTH = 32  # arrays and objects inside each other; json's recursion ends near 1000
INT64_MAX = 2**63 - 1
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last time Python dates
MAX_LIST_LIMIT = 200
ACTIVATION_ID = re.compile(r"\A[0-9a-f]{32}\Z")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON ({} when empty), or a 400 saying what is wrong with it."""
    if not request.can_read_body:
        return {}
    return parse_json(await request.read())


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, bounded nesting, text a database can store."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"The request content was malformed: the body is not UTF-8 "
                         f"(byte {error.start}).", param="body") from error
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as error:
        raise _too_deep() from error
    except ValueError as error:  # JSONDecodeError, NaN, an integer of over 4300 digits
        raise BadRequest(f"The request content was malformed: {error}", param="body") from error
    _check_value(value, 0)
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_value(value: Any, depth: int) -> None:
    if isinstance(value, (dict, list)):
        if depth >= MAX_JSON_DEPTH:
            raise _too_deep()
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key)
            _check_value(item, depth + 1)
    elif isinstance(value, str):
        _check_text(value)


def _too_deep() -> BadRequest:
    return BadRequest(f"The request content was malformed: nested deeper than "
                      f"{MAX_JSON_DEPTH} levels.", param="body")


def _check_text(text: str) -> None:
    if not storable_text(text):
        raise BadRequest("The request content was malformed: a string holds a NUL character "
                         "or an unpaired surrogate escape.", param="body")


def json_object(value: Any, what: str) -> dict[str, Any]:
    """The value when it is a JSON object, else a 400."""
    if not isinstance(value, dict):
        raise BadRequest(f"The request content was malformed: {what} must be a JSON object.",
                         param="body")
    return value


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter: `true` or `false`."""
    raw = request.query.get(name, str(default)).lower()
    if raw not in ("true", "false"):
        raise BadRequest(f"'{name}' must be true or false, not {raw[:40]!r}", param=name)
    return raw == "true"


def integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ASCII digits, between `low` and `high`."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(f"'{name}' must be an integer between {low} and {high}, "
                         f"not {raw[:40]!r}", param=name)
    return int(raw)


def paging(request: web.Request) -> tuple[int, int]:
    """`limit` (0 means the maximum, 200) and `skip` of a list request."""
    limit = integer(request, "limit", 30, 0, MAX_LIST_LIMIT)
    skip = integer(request, "skip", 0, 0, INT64_MAX)
    return limit or MAX_LIST_LIMIT, skip


def epoch_ms(request: web.Request, name: str) -> int | None:
    """An optional epoch-milliseconds query parameter (`since`, `upto`)."""
    if name not in request.query:
        return None
    return integer(request, name, 0, 0, MAX_EPOCH_MS)


def entity_name(request: web.Request, name: str = "name") -> str:
    """A path's entity name (an action's), as OpenWhisk allows them."""
    value = request.match_info[name]
    if len(value) > MAX_NAME_LENGTH or not ENTITY_NAME.match(value):
        raise BadRequest(f"'{name}' must be at most {MAX_NAME_LENGTH} characters: letters, "
                         "digits, '_', '@', '.', '-' and inner spaces, starting with a letter, "
                         "digit or '_'", param=name)
    return value


def action_name(request: web.Request, namespace: str) -> QualifiedName:
    """The action a path names in `namespace`: `actions/{name}` or `actions/{package}/{name}`."""
    package = request.match_info.get("package")
    if package is not None:
        check_entity_name(package, "package")
    return QualifiedName(namespace, package, entity_name(request))


def activation_id(request: web.Request) -> str:
    """A path's activation id: 32 lowercase hexadecimal characters."""
    value = request.match_info["id"]
    if not ACTIVATION_ID.match(value):
        raise BadRequest("'id' must be an activation id (32 hexadecimal characters)",
                         param="id")
    return value
