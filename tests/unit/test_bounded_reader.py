"""The backbone server's bounded connections: a line limit enforced while reading, an idle
deadline, and a cap on the connections of one socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lorafaas.backbone.bounded import ConnectionLimits, LineTooLong, read_line, serve_connection
from lorafaas.wire.attach import decode, encode

LIMITS = ConnectionLimits(max_line=64, max_connections=2, idle_s=5.0)


def fed(data: bytes, eof: bool = True, limit: int = LIMITS.max_line) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def test_lines_within_the_limit_are_read_one_at_a_time() -> None:
    reader = fed(b'{"op":"attach"}\n' + b"x" * 63 + b"\n")
    assert await read_line(reader, LIMITS) == b'{"op":"attach"}\n'
    assert await read_line(reader, LIMITS) == b"x" * 63 + b"\n"  # 64 with the newline
    assert await read_line(reader, LIMITS) is None  # a clean end


async def test_a_line_past_the_limit_is_refused_without_its_newline() -> None:
    with pytest.raises(LineTooLong, match="longer than 64 bytes"):
        await read_line(fed(b"y" * 200, eof=False), LIMITS)


async def test_a_newline_found_past_the_limit_is_refused_too() -> None:
    with pytest.raises(LineTooLong):
        await read_line(fed(b"y" * 100 + b"\n"), LIMITS)


async def test_a_connection_cut_inside_a_line_is_an_error_not_a_request() -> None:
    with pytest.raises(ConnectionResetError, match="inside a request line"):
        await read_line(fed(b'{"op":"att'), LIMITS)


async def test_a_silent_connection_times_out() -> None:
    with pytest.raises(TimeoutError):
        await read_line(fed(b"", eof=False), ConnectionLimits(64, 2, idle_s=0.05))


@pytest.fixture
async def echo(short_dir: Path) -> AsyncIterator[Path]:
    """A socket served by serve_connection within LIMITS (max_line 4096 here), answering
    every request with its op."""
    limits = ConnectionLimits(max_line=4096, max_connections=2, idle_s=5.0)
    live: set[asyncio.StreamWriter] = set()

    async def respond(request: dict[str, object]) -> dict[str, object]:
        return {"ok": True, "op": request.get("op")}

    path = short_dir / "echo.sock"
    server = await asyncio.start_unix_server(
        lambda r, w: serve_connection(r, w, limits, live, respond, "echo"), path=str(path),
        limit=limits.max_line)
    async with server:
        yield path


def push(path: Path, total: int) -> tuple[int, bytes]:
    """Send `total` bytes with no newline; how many went before the server cut it, and what
    it answered."""
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(str(path))
        chunk = b"z" * 65536
        try:
            while sent < total:
                sent += connection.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        connection.settimeout(5)
        try:
            answer = connection.recv(100)
        except ConnectionResetError:
            answer = b""
    return sent, answer


async def test_an_oversized_line_is_cut_while_it_is_sent_not_buffered(echo: Path) -> None:
    total = 32 * 1024 * 1024
    sent, answer = await asyncio.to_thread(push, echo, total)
    # The server stopped reading a little past its limit: the rest could not be sent
    # (what went is the kernel's socket buffers, a few hundred kB), and it answered nothing.
    assert sent < 4 * 1024 * 1024
    assert answer == b""
    assert (await ask(echo, {"op": "still"}))["op"] == "still"  # the socket serves on


async def ask(path: Path, message: dict[str, object]) -> dict[str, object]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(encode(message))
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return decode(line)


async def test_a_socket_takes_only_so_many_connections_at_once(echo: Path) -> None:
    held = [await asyncio.open_unix_connection(str(echo)) for _ in range(2)]
    for reader, writer in held:  # both served
        writer.write(encode({"op": "held"}))
        assert decode(await reader.readline())["op"] == "held"
    assert await ask(echo, {"op": "third"}) == {"ok": False, "error": "too many connections"}
    for _, writer in held:
        writer.close()
        await writer.wait_closed()
    answer = await ask(echo, {"op": "again"})
    for _ in range(100):  # until the server has seen them go (a generous bound, not timed)
        if answer.get("ok"):
            break
        await asyncio.sleep(0.1)
        answer = await ask(echo, {"op": "again"})
    assert answer == {"ok": True, "op": "again"}


async def test_bad_json_ends_the_connection(echo: Path) -> None:
    reader, writer = await asyncio.open_unix_connection(str(echo))
    writer.write(b"\xff\xfe not json\n")
    assert await reader.readline() == b""  # closed, no answer
    writer.close()
    await writer.wait_closed()
