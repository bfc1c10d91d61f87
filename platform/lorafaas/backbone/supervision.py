"""Keep a backbone server running: notice its exit, restart it with capped exponential
backoff, and say so in the log and in the backbone's health (`/metrics`).

While the server is down its backbone is marked down, so the pool places no new container
on it; warm containers keep serving from the weights they mapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from lorafaas.backbone.health import BackboneHealth
from lorafaas.backbone.ownership import read_pid_file, write_pid_file
from lorafaas.backbone.supervisor import BackboneServerProcess

logger = logging.getLogger(__name__)


@dataclass
class RestartBackoff:
    """Delays between restarts: `base_s`, doubled after each start that failed or did not
    stay up `stable_s`, at most `cap_s`."""

    base_s: float = 1.0
    cap_s: float = 60.0
    stable_s: float = 60.0
    _next_s: float = 0.0

    def after_exit(self, uptime_s: float) -> float:
        """The delay before the first restart after an exit of a server up `uptime_s`."""
        self._next_s = self.base_s if uptime_s >= self.stable_s or not self._next_s \
            else min(self.cap_s, self._next_s * 2)
        return self._next_s

    def after_failed_start(self) -> float:
        """The delay before the next try after a restart that failed."""
        self._next_s = min(self.cap_s, max(self._next_s, self.base_s) * 2)
        return self._next_s


class SupervisedServer:
    """One backbone's server, restarted whenever it exits until `stop`."""

    def __init__(self, name: str, make_process: Callable[[], BackboneServerProcess],
                 health: BackboneHealth, pid_file: Path,
                 on_ready: Callable[[BackboneServerProcess], Awaitable[None]],
                 backoff: RestartBackoff | None = None) -> None:
        self.name = name
        self.make_process = make_process
        self.health = health
        self.pid_file = pid_file  # pid and owner, for the next run to find a leftover server
        self.on_ready = on_ready  # describes the fresh server (its pid, what it published)
        self.backoff = backoff or RestartBackoff()
        self.process: BackboneServerProcess | None = None
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the server (a failure here fails the platform's start) and watch it."""
        await self._launch()
        self.health.mark_up(self.name)
        self._watch = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def _launch(self) -> None:
        process = self.make_process()
        self.process = process
        try:
            await process.start()
        except BaseException:
            await process.stop()
            raise
        assert process.pid is not None
        write_pid_file(self.pid_file, process.pid, process.owner)
        await self.on_ready(process)

    async def _supervise(self) -> None:
        while True:
            assert self.process is not None
            started = time.monotonic()
            status = await self.process.wait()
            self.health.mark_down(self.name)
            delay = self.backoff.after_exit(time.monotonic() - started)
            logger.error("backbone server %s (pid %s) exited with status %d; restarting in "
                         "%.0f s", self.name, self.process.pid, status, delay)
            await self._restart(delay)

    async def _restart(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            try:
                await self._launch()
            except (OSError, RuntimeError, TimeoutError, ValueError) as error:
                delay = self.backoff.after_failed_start()
                logger.error("backbone server %s failed to restart (%s); next try in %.0f s",
                             self.name, error, delay)
                continue
            self.health.mark_up(self.name, restarted=True)
            logger.warning("backbone server %s restarted (pid %s; %d restarts so far)",
                           self.name, self.process and self.process.pid,
                           self.health.states[self.name].restarts)
            return

    async def stop(self) -> None:
        """Stop watching, then stop the server, and drop its pid file if it is ours."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.process is not None:
            await self.process.stop()
            record = read_pid_file(self.pid_file)
            if record is not None and record == (self.process.pid, self.process.owner):
                self.pid_file.unlink(missing_ok=True)
