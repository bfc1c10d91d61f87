"""A bounded ring of the pool's recent evictions: which container went, when, and why.

The pool records every container it removes (to make room, at the end of its keep-alive,
after a failed health check, for a changed action) except at shutdown; the platform page
reads the ring through the pool. Old entries fall off: it is a window, not a log.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from lorafaas.invoker.containers import PooledContainer

RING_SIZE = 50


@dataclass(frozen=True)
class Eviction:
    """One container the pool removed."""

    at: float  # epoch seconds
    container: str  # its engine name
    function: str | None  # namespace/name, None for a stem cell
    state: str  # what it was when removed: prewarmed, preloaded, warm, starting...
    backbone: str
    memory_mb: int
    idle_s: float  # since its last use (or creation)
    uses: int  # activations it served
    reason: str


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
