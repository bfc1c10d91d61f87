"""Reading request bodies and query parameters, with 400s that name the problem."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lorafaas.errors import BadRequest


async def read_json(request: web.Request) -> Any:
    """The request body as JSON ({} when empty), or a 400 saying it is not JSON."""
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except json.JSONDecodeError as error:
        raise BadRequest(f"The request content was malformed: {error}") from error


def flag(request: web.Request, name: str) -> bool:
    """A boolean query parameter (`true`/`false`)."""
    return request.query.get(name, "false").lower() == "true"


def paging(request: web.Request) -> tuple[int, int]:
    """`limit` (0 means the maximum, 200) and `skip` of a list request."""
    try:
        limit, skip = int(request.query.get("limit", 30)), int(request.query.get("skip", 0))
    except ValueError as error:
        raise BadRequest("'limit' and 'skip' must be integers") from error
    if not 0 <= limit <= 200 or skip < 0:
        raise BadRequest("'limit' must be between 0 and 200 and 'skip' not negative")
    return limit or 200, skip


def epoch_ms(request: web.Request, name: str) -> int | None:
    """An optional epoch-milliseconds query parameter (`since`, `upto`)."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"'{name}' must be milliseconds since the epoch")
    return int(raw)
