"""The backbone server's control socket: the invoker's, never a container's.

It describes the backbone, opens and closes the per-container channels (`channels.py`)
and reports which containers are attached; see `wire/attach.py` for the requests. The
socket is mode 0600 in a folder of mode 0700 and is never mounted into a container.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafaas.backbone.bounded import ConnectionLimits, serve_connection
from lorafaas.backbone.channels import ChannelError, Channels, check_channel_id

CONTROL_LIMITS = ConnectionLimits(max_line=64 * 1024, max_connections=32, idle_s=300.0)


@dataclass
class Control:
    """Answers the control requests of one backbone server."""

    descriptor: dict[str, Any]
    load_seconds: float
    channels: Channels
    live: set[asyncio.StreamWriter] = field(default_factory=set)

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one control request."""
        try:
            return await self._answer(request)
        except ChannelError as error:
            return {"ok": False, "error": str(error)}

    async def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "describe":
            return {"ok": True, "backbone": self.descriptor}
        if op == "open":
            channel = await self.channels.open(check_channel_id(request.get("channel")),
                                               _path(request.get("path")))
            return {"ok": True, "channel": channel.id, "path": str(channel.path)}
        if op == "close":
            closed = await self.channels.close(check_channel_id(request.get("channel")))
            return {"ok": True, "closed": closed}
        if op == "channels":
            return {"ok": True, "channels": self.channels.ids(), "epoch": self.channels.epoch}
        if op == "stats":
            return {"ok": True, "attached": self.channels.attached(),
                    "channels": len(self.channels.ids()),
                    "bytes": self.descriptor.get("bytes", 0), "loadSeconds": self.load_seconds}
        return {"ok": False, "error": f"unknown op {op!r}"}


async def start_control(control: Control, socket_path: Path,
                        limits: ConnectionLimits = CONTROL_LIMITS) -> asyncio.AbstractServer:
    """Listen on the control socket, reachable by the server's own user only."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, limits, control.live, control.answer,
                               "control")

    server = await asyncio.start_unix_server(connected, path=str(socket_path),
                                             limit=limits.max_line)
    os.chmod(socket_path.parent, 0o700)
    os.chmod(socket_path, 0o600)
    return server


def _path(value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ChannelError(f"path {value!r} is not a socket path")
    return Path(value)
