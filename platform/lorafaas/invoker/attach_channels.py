"""The invoker's side of the per-container attach channels (see `wire/attach.py`).

Each container with a shared backbone gets its own channel: the pool asks the backbone
server, over its control socket, to listen at a path in that container's folder before the
container starts, and to close it when the container is removed. The folder is
bind-mounted, so after a server restart the channel is opened again at the same path and
the live container sees the new socket (`open_missing`, run by the maintenance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.wire.attach import exchange

CONTROL_TIMEOUT_S = 30.0


class ChannelUnavailable(RuntimeError):
    """The backbone server could not open or close a channel; the message says why."""


@dataclass(frozen=True)
class AttachChannels:
    """Opens and closes the channels of one backbone server."""

    control_socket: Path
    timeout_s: float = CONTROL_TIMEOUT_S

    async def open(self, channel: str, path: Path) -> None:
        """Have the server listen for one container at `path`."""
        await self._request({"op": "open", "channel": channel, "path": str(path)})

    async def close(self, channel: str) -> bool:
        """End a container's channel and attachment; False if it was not open."""
        return bool((await self._request({"op": "close", "channel": channel}))["closed"])

    async def open_ids(self) -> set[str]:
        """The channels the server has open."""
        return set((await self._request({"op": "channels"}))["channels"])

    async def open_missing(self, wanted: Mapping[str, Path]) -> list[str]:
        """Open the channels of `wanted` the server lacks (it restarted); their ids."""
        missing = sorted(set(wanted) - await self.open_ids())
        for channel in missing:
            await self.open(channel, wanted[channel])
        return missing

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await exchange(self.control_socket, message)
        except (OSError, TimeoutError, ValueError) as error:
            raise ChannelUnavailable(f"backbone server at {self.control_socket} did not "
                                     f"answer {message['op']}: {error}") from error
        if not answer.get("ok"):
            raise ChannelUnavailable(f"backbone server refused {message['op']}: "
                                     f"{answer.get('error')}")
        return answer
