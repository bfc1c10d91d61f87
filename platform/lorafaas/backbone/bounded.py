"""Bounded connections of the backbone server: what one client can make the server hold.

A socket's connections are served by `serve_connection`: at most `max_connections` at
once (one more is told so and closed), each request line read with the stream's limit set
to `max_line` (a longer line ends the connection as soon as the limit is passed, so the
reader holds at most about twice the limit plus one socket read, never the line), and
each line, and the taking of each answer, within `idle_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lorafaas.wire.attach import decode, encode

logger = logging.getLogger(__name__)

Respond = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds of every connection on one socket."""

    max_line: int  # bytes of one request line, newline included
    max_connections: int  # open at once on the socket
    idle_s: float  # for one request line to arrive, and for an answer to be taken


class LineTooLong(ValueError):
    """A request line passed its socket's limit; the connection is ended."""


async def read_line(reader: asyncio.StreamReader, limits: ConnectionLimits) -> bytes | None:
    """The next request line, None at a clean end of stream.

    The reader must have been made with `limit=limits.max_line` (what
    `asyncio.start_unix_server(limit=...)` sets): past it, reading stops. LineTooLong,
    TimeoutError (no full line within `idle_s`) or ConnectionResetError (cut in a line)."""
    try:
        async with asyncio.timeout(limits.idle_s):
            line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise ConnectionResetError("the connection ended inside a request line") from error
        return None
    except asyncio.LimitOverrunError as error:
        raise LineTooLong(f"request line longer than {limits.max_line} bytes") from error
    if len(line) > limits.max_line:
        raise LineTooLong(f"request line longer than {limits.max_line} bytes")
    return line


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           limits: ConnectionLimits, live: set[asyncio.StreamWriter],
                           respond: Respond, where: str) -> None:
    """Answer one connection's requests within `limits`; `live` holds the socket's open
    connections (this one is refused when it is full)."""
    if len(live) >= limits.max_connections:
        logger.warning("%s: connection refused, %d already open", where, len(live))
        await _refuse(writer, "too many connections")
        return
    live.add(writer)
    try:
        while (line := await read_line(reader, limits)) is not None:
            writer.write(encode(await respond(decode(line))))
            async with asyncio.timeout(limits.idle_s):
                await writer.drain()
    except (LineTooLong, TimeoutError, ConnectionError, ValueError) as error:
        # ValueError: not JSON, not UTF-8 or not an object. The connection ends either way.
        logger.warning("%s: connection ended: %s", where, error or type(error).__name__)
    finally:
        live.discard(writer)
        writer.close()


async def _refuse(writer: asyncio.StreamWriter, reason: str) -> None:
    writer.write(encode({"ok": False, "error": reason}))
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (TimeoutError, ConnectionError):
        pass  # the client went away first: nothing more is owed to it


def close_all(live: set[asyncio.StreamWriter]) -> None:
    """End every open connection of a socket (its channel is being closed)."""
    for writer in list(live):
        writer.close()
    live.clear()
