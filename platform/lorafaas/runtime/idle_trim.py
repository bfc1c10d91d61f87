"""Give the heap back when the container goes idle.

A function container spends most of its life idle between bursts (kept alive, pre-loaded
or in the spare share), and what it holds then is what the pool pays for. After the last
/init or /run in flight ends, and nothing new arrives for `delay_s`, the allocator's free
memory goes back to the system (`runtime.memory.release_free_heap`). The delay keeps a
steady stream of requests from paying for a trim between each two of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

logger = logging.getLogger(__name__)

TRIMMED_PATHS = frozenset({"/init", "/run"})


class IdleTrimmer:
    """Counts the requests in flight; calls `release` on a worker thread once they have all
    ended and `delay_s` has passed with none new."""

    def __init__(self, release: Callable[[], object], delay_s: float = 0.25) -> None:
        self._release = release
        self._delay_s = delay_s
        self._active = 0
        self._timer: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Future[object] | None = None
        self.releases = 0  # how many releases ended well (tests read it)

    @contextlib.asynccontextmanager
    async def active(self) -> AsyncIterator[None]:
        """Hold the container busy for the block."""
        self._active += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            yield
        finally:
            self._active -= 1
            if self._active == 0:
                self._timer = asyncio.get_running_loop().call_later(self._delay_s,
                                                                    self._start_release)

    async def settled(self) -> None:
        """Wait for a release that has started (tests)."""
        if self._releasing is not None:
            await asyncio.shield(self._releasing)

    def _start_release(self) -> None:
        self._timer = None
        if self._active or (self._releasing is not None and not self._releasing.done()):
            return
        self._releasing = asyncio.ensure_future(asyncio.to_thread(self._release))
        self._releasing.add_done_callback(self._released)

    def _released(self, future: asyncio.Future[object]) -> None:
        if future.cancelled() or future.exception() is not None:
            logger.warning("releasing the free heap failed: %r",
                           None if future.cancelled() else future.exception())
            return
        self.releases += 1


def idle_trim_middleware(trimmer: IdleTrimmer) -> Middleware:
    """An aiohttp middleware that holds the trimmer busy during /init and /run."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in TRIMMED_PATHS:
            return await handler(request)
        async with trimmer.active():
            return await handler(request)

    return middleware
