"""Per-namespace invocation throttling, as OpenWhisk's: a rate per minute and a concurrency cap."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from lorafaas.errors import TooManyRequests

__all__ = ["InvocationThrottle", "NamespaceLimits", "SharedCounts", "TooManyRequests"]


@dataclass(frozen=True)
class NamespaceLimits:
    """The throttles of a namespace (OpenWhisk's names)."""

    invocations_per_minute: int
    concurrent_invocations: int

    def as_json(self) -> dict[str, int]:
        """The body of `GET /namespaces/{ns}/limits`."""
        return {"invocationsPerMinute": self.invocations_per_minute,
                "concurrentInvocations": self.concurrent_invocations}


class InvocationThrottle:
    """Admits an invocation or raises TooManyRequests; `release` when the activation ends."""

    def __init__(self, limits: NamespaceLimits,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._in_flight: dict[str, int] = defaultdict(int)

    def admit(self, namespace: str) -> None:
        """Count one invocation against the namespace, or refuse it."""
        now = self._clock()
        recent = self._recent[namespace]
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= self.limits.invocations_per_minute:
            raise TooManyRequests(f"Too many requests in the last minute (count: {len(recent)}, "
                                  f"allowed: {self.limits.invocations_per_minute}).")
        in_flight = self._in_flight[namespace]
        if in_flight >= self.limits.concurrent_invocations:
            raise TooManyRequests(f"Too many concurrent requests in flight (count: {in_flight}, "
                                  f"allowed: {self.limits.concurrent_invocations}).")
        recent.append(now)
        self._in_flight[namespace] = in_flight + 1

    def hold(self, namespace: str) -> None:
        """Count an activation in flight without admitting it (one accepted before a restart)."""
        self._in_flight[namespace] += 1

    def release(self, namespace: str) -> None:
        """The activation ended (its record is stored)."""
        self._in_flight[namespace] = max(0, self._in_flight[namespace] - 1)

    def in_flight(self, namespace: str) -> int:
        """Activations of the namespace accepted and not yet ended."""
        return self._in_flight[namespace]


class SharedCounts(Protocol):
    """The same throttles counted for every controller at once (several controllers on the
    broker: `lorafaas.broker.throttles`); this controller's `InvocationThrottle` then only
    counts its own activations."""

    async def admit(self, namespace: str) -> None:
        """Count one invocation against the namespace, or raise TooManyRequests."""
        ...

    async def hold(self, namespace: str) -> None:
        """Count an activation in flight without admitting it."""
        ...

    async def release(self, namespace: str) -> None:
        """The activation ended."""
        ...
