"""A bounded ring of the pool's recent evictions: which container went, when, and why.

The pool records every container it removes (to make room, at the end of its keep-alive,
after a failed health check, for a changed action) except at shutdown; the platform page
reads the ring through the invoker's snapshot. Old entries fall off: it is a window, not a log.
"""

from __future__ import annotations

import time
from collections import deque

from lorafaas.invoker.containers import PooledContainer
from lorafaas.invoking.client import Eviction

RING_SIZE = 50


class EvictionLog:
    """The last `size` evictions, newest first when read."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._ring: deque[Eviction] = deque(maxlen=size)

    def record(self, container: PooledContainer, reason: str) -> Eviction:
        """Note that `container` was removed, and why."""
        eviction = Eviction(at=time.time(), container=container.info.name,
                            function=container.function_path, state=container.state.value,
                            backbone=container.backbone, memory_mb=container.memory_mb,
                            idle_s=round(time.monotonic() - container.last_used, 1),
                            uses=container.uses, reason=reason)
        self._ring.append(eviction)
        return eviction

    def recent(self) -> list[Eviction]:
        """The evictions held, newest first."""
        return list(reversed(self._ring))
