"""The adapters a namespace container holds: loaded on first use, dropped coldest first.

A budget in bytes bounds the loaded adapters. An adapter in use (pinned by a request that
has not ended) is never dropped; loading one drops unpinned adapters, least recently used
first, until it fits. When pinned ones alone leave too little room the load still goes
ahead (its request is already here) and the excess is dropped as those requests end. An
adapter larger than the whole budget can never fit: it is refused.

Pure bookkeeping, thread-safe: the caller supplies `load(name) -> bytes` and
`unload(name)`, which run under the cache's lock, so one adapter is never loaded twice at
once and an adapter is never dropped while it loads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


class AdapterTooLarge(ValueError):
    """The adapter alone exceeds the container's adapter budget."""


@dataclass(frozen=True)
class Acquired:
    """An adapter pinned for one request: whether it was loaded already, and the load's ms."""

    name: str
    was_loaded: bool
    load_ms: float


@dataclass
class _Slot:
    bytes: int
    pins: int = 0


class AdapterCache:
    """Loaded adapters within `budget_bytes`, LRU by bytes (see the module doc)."""

    def __init__(self, budget_bytes: int, load: Callable[[str], int],
                 unload: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_bytes = budget_bytes
        self._load = load
        self._unload = unload
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: OrderedDict[str, _Slot] = OrderedDict()  # least recently used first
        self.loads = 0
        self.drops = 0

    def acquire(self, name: str) -> Acquired:
        """Pin `name` for a request, loading it first if it is not loaded (raises what
        `load` raises, or AdapterTooLarge; nothing stays pinned then)."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is not None:
                slot.pins += 1
                self._slots.move_to_end(name)
                return Acquired(name, True, 0.0)
            started = self._clock()
            size = self._load(name)
            if size > self.budget_bytes:
                self._unload(name)
                raise AdapterTooLarge(f"adapter {name!r} takes {size} bytes, more than the "
                                      f"container's adapter budget of {self.budget_bytes}")
            self.loads += 1
            self._slots[name] = _Slot(size, pins=1)
            self._trim()
            return Acquired(name, False, (self._clock() - started) * 1000)

    def release(self, name: str) -> None:
        """Unpin `name` (its request ended); drop cold adapters if over the budget."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is None or slot.pins == 0:
                raise KeyError(f"adapter {name!r} is not pinned")
            slot.pins -= 1
            self._trim()

    def loaded(self) -> dict[str, int]:
        """The loaded adapters' bytes, least recently used first."""
        with self._lock:
            return {name: slot.bytes for name, slot in self._slots.items()}

    @property
    def bytes(self) -> int:
        """The bytes the loaded adapters take."""
        with self._lock:
            return sum(slot.bytes for slot in self._slots.values())

    def _trim(self) -> None:
        """Drop unpinned adapters, coldest first, while over the budget (lock held)."""
        total = sum(slot.bytes for slot in self._slots.values())
        for name in [n for n, s in self._slots.items() if s.pins == 0]:
            if total <= self.budget_bytes:
                return
            total -= self._slots.pop(name).bytes
            self._unload(name)
            self.drops += 1
