"""Start and stop a backbone server as a child process of the invoker."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from lorafaas.backbone.accelerator import TMPFS, TransportChoice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneEndpoint:
    """Where a running backbone server can be reached and what it publishes."""

    name: str
    socket_path: Path
    publish_dir: Path


class BackboneServerProcess:
    """One backbone server child process."""

    def __init__(self, endpoint: BackboneEndpoint, model_dir: Path, dtype: str = "auto",
                 owner: str = "", transport: TransportChoice | None = None) -> None:
        # `auto`: the checkpoint's own dtype; else a torch dtype name (the server's --dtype).
        self.endpoint = endpoint
        self.model_dir = model_dir
        self.dtype = dtype
        self.owner = owner  # the platform run's owner id (lorafaas.backbone.ownership)
        # tmpfs unless told: the choice is made once per platform start (backbone.accelerator).
        self.transport = transport or TransportChoice(TMPFS, None, "default")
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id, once started."""
        return self._process.pid if self._process is not None else None

    async def start(self, timeout_s: float = 300.0) -> None:
        """Start the server and wait for its READY line."""
        if not (self.model_dir / "config.json").exists():
            raise FileNotFoundError(f"no backbone at {self.model_dir} (config.json missing)")
        owner = ["--owner", self.owner] if self.owner else []
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lorafaas.backbone.server", "--model-dir", str(self.model_dir),
            "--publish-dir", str(self.endpoint.publish_dir), "--socket",
            str(self.endpoint.socket_path), "--dtype", self.dtype, *owner,
            *self.transport.server_arguments(),
            stdout=asyncio.subprocess.PIPE)
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout_s)
        if not line.startswith(b"READY"):
            await self.stop()
            reason = line.decode(errors="replace").strip().removeprefix("FAILED ")
            raise RuntimeError(f"backbone server for {self.model_dir} failed to start: "
                               f"{reason or 'it exited'}")
        logger.info("backbone server %s ready on %s (%s: %s)", self.endpoint.name,
                    self.endpoint.socket_path, self.transport.transport, self.transport.reason)

    async def wait(self) -> int:
        """Wait until the server exits; its exit status (negative: the signal)."""
        assert self._process is not None, "the server was never started"
        return await self._process.wait()

    async def stop(self) -> None:
        """Terminate the server and wait for it."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.terminate()
        try:
            await asyncio.wait_for(self._process.wait(), 30)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()

