"""Per-container attach channels: the server knows a container from the socket its
connection arrived on, a container attaches and detaches only itself and sees no other
name, and the invoker opens, closes and (after a server restart) re-opens channels."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import pytest

from lorafaas.backbone.channels import Channels, SameShare
from lorafaas.backbone.control import Control, start_control
from lorafaas.invoker.attach_channels import AttachChannels, ChannelUnavailable
from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig
from lorafaas.wire.attach import exchange

DESCRIPTOR = {"transport": "tmpfs", "weights_file": "model.safetensors", "bytes": 1234}


async def ask(path: Path, message: dict[str, Any]) -> dict[str, Any]:
    """One request on a socket, its answer."""
    return await exchange(path, message)


def folder(root: Path, name: str) -> Path:
    """A container's channel folder, as the pool makes it."""
    path = root / name
    path.mkdir()
    return path / "attach.sock"


class Server:
    """A backbone server's control socket and channels, in this process."""

    def __init__(self, root: Path) -> None:
        self.control_socket = root / "control" / "attach.sock"
        self.control = Control(DESCRIPTOR, 0.5, Channels(SameShare(DESCRIPTOR)))

    async def __aenter__(self) -> Self:
        self.control_socket.parent.mkdir(exist_ok=True)
        self._server = await start_control(self.control, self.control_socket)
        return self

    async def __aexit__(self, *_: object) -> None:
        self._server.close()
        await self.control.channels.close_all()

    async def stats(self) -> dict[str, Any]:
        return await ask(self.control_socket, {"op": "stats"})


@pytest.fixture
async def server(short_dir: Path) -> AsyncIterator[Server]:
    async with Server(short_dir) as running:
        yield running


async def open_two(server: Server, root: Path) -> tuple[Path, Path]:
    a, b = folder(root, "a"), folder(root, "b")
    for name, path in (("a", a), ("b", b)):
        assert await ask(server.control_socket, {"op": "open", "channel": name,
                                                 "path": str(path)}) == {
            "ok": True, "channel": name, "path": str(path)}
    return a, b


async def test_the_control_socket_is_the_servers_users_only(server: Server) -> None:
    assert stat.S_IMODE(os.stat(server.control_socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(server.control_socket.parent).st_mode) == 0o700


async def test_a_connection_is_the_container_of_its_socket_whatever_it_claims(
        server: Server, short_dir: Path) -> None:
    a, b = await open_two(server, short_dir)
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o666  # the container's user connects
    answer = await ask(a, {"op": "attach", "client": "b"})
    assert answer == {"ok": True, "backbone": DESCRIPTOR, "epoch": ""}
    assert (await server.stats())["attached"] == ["a"]  # a, not the b it claimed
    # b tries to detach a, by name: only b's own (absent) attachment is touched.
    assert await ask(b, {"op": "detach", "client": "a"}) == {"ok": True}
    assert (await server.stats())["attached"] == ["a"]
    assert await ask(a, {"op": "detach"}) == {"ok": True}
    assert (await server.stats())["attached"] == []


@pytest.mark.parametrize("op", ["stats", "channels", "describe", "open", "close"])
async def test_a_channel_lists_nothing_and_controls_nothing(server: Server, short_dir: Path,
                                                            op: str) -> None:
    a, b = await open_two(server, short_dir)
    await ask(a, {"op": "attach"})
    answer = await ask(b, {"op": op, "channel": "a", "path": str(a)})
    assert answer["ok"] is False and "a channel takes attach, detach" in answer["error"]
    assert "attached" not in answer and "channels" not in answer
    assert (await server.stats())["attached"] == ["a"]
    assert (await ask(server.control_socket, {"op": "channels"}))["channels"] == ["a", "b"]


async def test_closing_a_channel_ends_its_attachment_and_removes_its_socket(
        server: Server, short_dir: Path) -> None:
    a, b = await open_two(server, short_dir)
    await ask(a, {"op": "attach"})
    await ask(b, {"op": "attach"})
    assert await ask(server.control_socket, {"op": "close", "channel": "a"}) == {
        "ok": True, "closed": True}
    assert not a.exists()
    with pytest.raises(OSError):
        await ask(a, {"op": "attach"})
    assert (await server.stats())["attached"] == ["b"]
    assert (await ask(server.control_socket, {"op": "close", "channel": "a"}))["closed"] is False


@pytest.mark.parametrize(("channel", "path", "error"), [
    ("../x", "{root}/x/attach.sock", "not a plain name"),
    (None, "{root}/x/attach.sock", "not a plain name"),
    ("x", "{root}/x/other.sock", "named attach.sock"),
    ("x", "relative/attach.sock", "named attach.sock"),
    ("x", "{root}/missing/attach.sock", "cannot be used"),
    ("x", "{root}/file/attach.sock", "is not a directory"),
    ("x", "{root}/x/" + "d" * 120 + "/attach.sock", "longer than a Unix socket path"),
    ("x", None, "not a socket path"),
])
async def test_open_refuses_what_cannot_be_a_channel(server: Server, short_dir: Path,
                                                     channel: str | None, path: str | None,
                                                     error: str) -> None:
    (short_dir / "x").mkdir()
    (short_dir / "file").write_text("not a folder")
    answer = await ask(server.control_socket, {
        "op": "open", "channel": channel,
        "path": path.format(root=short_dir) if path is not None else None})
    assert answer["ok"] is False and error in answer["error"]
    assert (await ask(server.control_socket, {"op": "channels"}))["channels"] == []


async def test_open_never_replaces_a_file_that_is_not_a_socket(server: Server,
                                                               short_dir: Path) -> None:
    path = folder(short_dir, "x")
    path.write_text("precious")
    answer = await ask(server.control_socket, {"op": "open", "channel": "x",
                                               "path": str(path)})
    assert answer["ok"] is False and "is not a socket" in answer["error"]
    assert path.read_text() == "precious"


async def test_one_channel_per_id_and_per_path(server: Server, short_dir: Path) -> None:
    a, b = await open_two(server, short_dir)
    again = await ask(server.control_socket, {"op": "open", "channel": "a", "path": str(a)})
    assert again["ok"] is True  # the same channel again: a no-op
    for channel, path in (("a", b), ("c", a)):
        answer = await ask(server.control_socket, {"op": "open", "channel": channel,
                                                   "path": str(path)})
        assert answer["ok"] is False


async def test_a_restarted_server_opens_the_same_path_and_the_old_one_leaves_it(
        short_dir: Path) -> None:
    path = folder(short_dir, "a")
    old = Channels(SameShare(DESCRIPTOR))
    await old.open("a", path)
    new = Channels(SameShare({"transport": "tmpfs", "new": True}))
    await new.open("a", path)  # over the socket file the old one left
    await old.close("a")  # must not remove the new server's socket
    try:
        assert (await ask(path, {"op": "attach"}))["backbone"] == {"transport": "tmpfs",
                                                                  "new": True}
    finally:
        await new.close_all()


async def test_a_stale_socket_of_a_dead_server_is_replaced(server: Server,
                                                           short_dir: Path) -> None:
    path = folder(short_dir, "a")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    await AttachChannels(server.control_socket).open("a", path)
    assert (await ask(path, {"op": "attach"}))["ok"] is True


async def test_the_invoker_opens_again_only_what_a_restarted_server_lacks(
        short_dir: Path) -> None:
    a, b = folder(short_dir, "a"), folder(short_dir, "b")
    async with Server(short_dir) as first:
        channels = AttachChannels(first.control_socket)
        await channels.open("a", a)
        assert await channels.open_missing({"a": a}) == []
    async with Server(short_dir) as restarted:  # same control socket, no channels
        assert await channels.open_missing({"a": a, "b": b}) == ["a", "b"]
        assert await channels.open_ids() == {"a", "b"}
        assert (await ask(a, {"op": "attach"}))["ok"] is True
        assert await channels.close("a") is True
        assert await channels.close("a") is False
        assert (await restarted.stats())["attached"] == []


async def test_the_invoker_is_told_when_the_server_refuses_or_is_gone(server: Server,
                                                                      short_dir: Path) -> None:
    channels = AttachChannels(server.control_socket)
    with pytest.raises(ChannelUnavailable, match="refused open.*named attach.sock"):
        await channels.open("a", short_dir / "a.sock")
    with pytest.raises(ChannelUnavailable, match="did not answer close"):
        await AttachChannels(short_dir / "nobody.sock").close("a")


class Removed:
    """A backend and runtime client that only record removals."""

    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    async def close(self) -> None:
        """The runtime client's close."""


def pooled(root: Path, server: Server, fake: Removed) -> tuple[ContainerPool, PooledContainer]:
    """A pool holding one idle container whose channel folder exists."""
    config = PoolConfig(invoker_id="unit", image="img", run_dir=root, pids_limit=8,
                        start_timeout_s=1, max_instances=1)
    pool = ContainerPool(fake, config,  # type: ignore[arg-type]
                         BackboneMounts(server.control_socket, root / "published"))
    folders = ContainerFolders(root / "c" / "k1")
    folders.create()
    container = PooledContainer(ContainerInfo("id1", "lorafaas-unit-k1", 0), folders,
                                fake, 1024, ContainerState.IDLE,  # type: ignore[arg-type]
                                backbone="default")
    pool._containers[container.info.id] = container
    return pool, container


async def test_the_pool_opens_again_the_channels_a_restarted_server_lacks(
        short_dir: Path) -> None:
    fake = Removed()
    async with Server(short_dir) as restarted:
        pool, container = pooled(short_dir, restarted, fake)
        assert await pool.ensure_channels() == 1
        assert await pool.ensure_channels() == 0  # nothing missing any more
        assert (await ask(container.folders.attach_socket, {"op": "attach"}))["ok"] is True
        await pool.discard(container, "test")
        assert fake.removed == ["id1"]
        assert (await ask(restarted.control_socket, {"op": "channels"}))["channels"] == []
    assert await pool.ensure_channels() == 0  # no server: told in the log, nothing raised
