"""Per-container attach channels: one listening socket per function container.

The invoker opens a channel (over the control socket, see `wire/attach.py`) before the
container starts, at a path in a folder that only that container mounts, and closes it
when the container is removed. A connection's container is the channel whose socket it
arrived on: what a request says never names it, so a container attaches and detaches only
itself and sees no other container's name.

What an attach hands out comes from `Shares`, asked per channel: on tmpfs one descriptor
serves everyone (`SameShare`); on CUDA each attach gets its own share of every storage
(`CudaShares`: one reference-count slot per receiver, see `wire/cuda_ipc.py`).

Every reply that hands out a descriptor names the server's epoch (a random id made at its
start): a container that finds another epoch on its channel, or no server, knows that the
memory it mapped over CUDA IPC is gone (`{"op": "epoch"}` asks for it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lorafaas.backbone.bounded import ConnectionLimits, close_all, serve_connection
from lorafaas.wire.attach import CHANNEL_SOCKET_NAME, REQUEST_LINE
from lorafaas.wire.cuda_ipc import share_storages

logger = logging.getLogger(__name__)

CHANNEL_LIMITS = ConnectionLimits(max_line=REQUEST_LINE, max_connections=4, idle_s=30.0)
MAX_CHANNELS = 4096
MAX_SOCKET_PATH = 107  # bytes of sun_path, less its terminating NUL
CHANNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class ChannelError(ValueError):
    """A control request to open or close a channel is refused; the message says why."""


class Shares(Protocol):
    """The descriptors attach hands out, per receiver."""

    def share(self, channel: str) -> dict[str, Any]:
        """The descriptor for the container of `channel`."""

    def release(self, channel: str) -> None:
        """That container detached or is gone: drop what was made for it."""


@dataclass(frozen=True)
class SameShare:
    """One descriptor for every receiver (tmpfs: they all map the same file)."""

    descriptor: dict[str, Any]

    def share(self, channel: str) -> dict[str, Any]:
        """The one descriptor."""
        return self.descriptor

    def release(self, channel: str) -> None:
        """Nothing was made per receiver."""


class CudaShares:
    """Per-receiver CUDA IPC shares: the descriptor's views with a fresh export of every
    storage for each attach (torch counts one reference per receiver; a receiver gives its
    own back when its storages are freed, so nothing is owed at detach)."""

    def __init__(self, descriptor: dict[str, Any], storages: list[Any],
                 export: Callable[[Any], tuple[Any, ...]] | None = None) -> None:
        self.descriptor = descriptor  # without `storages`: those are made per receiver
        self.storages = storages  # held by the publisher too, for as long as the server runs
        self.export = export  # stands in for `_share_cuda_` in tests
        self.attaches: dict[str, int] = {}  # shares handed out, per channel

    def share(self, channel: str) -> dict[str, Any]:
        """The descriptor with this receiver's own shares."""
        self.attaches[channel] = self.attaches.get(channel, 0) + 1
        return {**self.descriptor, "storages": share_storages(self.storages, self.export)}

    def release(self, channel: str) -> None:
        """The receiver detached or its channel closed: forget its count."""
        self.attaches.pop(channel, None)


@dataclass
class Channel:
    """One container's socket, its open connections and whether it is attached."""

    id: str
    path: Path
    server: asyncio.AbstractServer
    inode: int  # of the socket file this server bound: only that one is ever removed
    attached: bool = False
    live: set[asyncio.StreamWriter] = field(default_factory=set)


class Channels:
    """Every open channel of one backbone server."""

    def __init__(self, shares: Shares, limits: ConnectionLimits = CHANNEL_LIMITS,
                 max_channels: int = MAX_CHANNELS, epoch: str = "") -> None:
        self.shares = shares
        self.epoch = epoch  # this server's start (see the module docstring)
        self.limits = limits
        self.max_channels = max_channels
        self._open: dict[str, Channel] = {}

    def ids(self) -> list[str]:
        """The open channels."""
        return sorted(self._open)

    def attached(self) -> list[str]:
        """The channels whose container is attached."""
        return sorted(c.id for c in self._open.values() if c.attached)

    async def open(self, channel_id: str, path: Path) -> Channel:
        """Listen for one container at `path`; the same id and path again is a no-op."""
        check_channel_id(channel_id)
        known = self._open.get(channel_id)
        if known is not None and known.path == path:
            return known
        self._check_new(channel_id, path)
        remove_stale_socket(path)
        channel = await self._listen(channel_id, path)
        self._open[channel_id] = channel
        logger.info("channel %s open at %s", channel_id, path)
        return channel

    async def close(self, channel_id: str) -> bool:
        """Stop listening for a container and end its attachment; False if not open."""
        channel = self._open.pop(channel_id, None)
        if channel is None:
            return False
        channel.server.close()
        close_all(channel.live)
        _unlink_if_ours(channel)
        self.shares.release(channel_id)
        logger.info("channel %s closed (attached: %s)", channel_id, channel.attached)
        return True

    async def close_all(self) -> None:
        """Close every channel (the server is stopping)."""
        for channel_id in list(self._open):
            await self.close(channel_id)

    async def answer(self, channel: Channel, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request on a channel: only its own container's attach state."""
        op = request.get("op")
        if op == "attach":
            channel.attached = True
            logger.info("channel %s attached", channel.id)
            return {"ok": True, "backbone": self.shares.share(channel.id), "epoch": self.epoch}
        if op == "epoch":
            return {"ok": True, "epoch": self.epoch}
        if op == "detach":
            if channel.attached:
                channel.attached = False
                self.shares.release(channel.id)
                logger.info("channel %s detached", channel.id)
            return {"ok": True}
        return {"ok": False,
                "error": f"unknown op {op!r} (a channel takes attach, detach, epoch)"}

    def _check_new(self, channel_id: str, path: Path) -> None:
        if channel_id in self._open:
            raise ChannelError(f"channel {channel_id} is open at another path")
        if any(c.path == path for c in self._open.values()):
            raise ChannelError(f"{path} is another channel's socket")
        if len(self._open) >= self.max_channels:
            raise ChannelError(f"{self.max_channels} channels are open already")
        check_socket_path(path)

    async def _listen(self, channel_id: str, path: Path) -> Channel:
        box: list[Channel] = []

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            channel = box[0]
            await serve_connection(reader, writer, self.limits, channel.live,
                                   lambda request: self.answer(channel, request),
                                   f"channel {channel.id}")

        server = await asyncio.start_unix_server(connected, path=str(path),
                                                 limit=self.limits.max_line)
        # The container's user is not the server's: it must be able to connect.
        os.chmod(path, 0o666)
        box.append(Channel(channel_id, path, server, os.lstat(path).st_ino))
        return box[0]


def check_channel_id(channel_id: object) -> str:
    """The id when it is a short plain name; ChannelError otherwise."""
    if not isinstance(channel_id, str) or not CHANNEL_ID.fullmatch(channel_id):
        raise ChannelError(f"channel id {channel_id!r} is not a plain name of at most 64 "
                           f"letters, digits, '_', '.' or '-'")
    return channel_id


def check_socket_path(path: Path) -> None:
    """ChannelError unless `path` can be a channel socket: absolute, named `attach.sock`,
    short enough, in a real folder (not a link)."""
    if not path.is_absolute() or path.name != CHANNEL_SOCKET_NAME:
        raise ChannelError(f"a channel socket is an absolute path named "
                           f"{CHANNEL_SOCKET_NAME}, not {path}")
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ChannelError(f"{path} is longer than a Unix socket path may be")
    try:
        folder = os.lstat(path.parent)
    except OSError as error:
        raise ChannelError(f"the folder of {path} cannot be used: {error}") from error
    if not stat.S_ISDIR(folder.st_mode):
        raise ChannelError(f"the folder of {path} is not a directory")


def remove_stale_socket(path: Path) -> None:
    """Remove a socket a server that died left at `path`; ChannelError if something else is
    there (a channel never replaces a file that is not a socket)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ChannelError(f"{path} exists and is not a socket")
    path.unlink()


def _unlink_if_ours(channel: Channel) -> None:
    # A newer server may have bound the path since (after a restart): leave its socket.
    try:
        if os.lstat(channel.path).st_ino == channel.inode:
            channel.path.unlink()
    except FileNotFoundError:
        pass
