"""Namespace throttles held across controllers, in the broker's key-value store.

One key per namespace holds its admissions of the last minute and each controller's count
of activations in flight; a controller admits by compare-and-set on the key's revision, so
that two controllers admitting at once never pass a limit together. A controller stamps
the keys where it holds activations every `ALIVE_S`, writing its own count from what it
runs (so that a release that failed to reach the key is made good); the counts of one not stamped for
`STALE_S` (it died) are dropped by the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from lorafaas.background import running_in_background
from lorafaas.broker.codec import Json, dumps, loads
from lorafaas.controller.throttle import NamespaceLimits, TooManyRequests

logger = logging.getLogger(__name__)

BUCKET = "lorafaas-throttles"
ALIVE_S = 5.0
STALE_S = 20.0
WINDOW_S = 60.0


@dataclass
class Counts:
    """One namespace's key: admissions of the last minute, in flight per controller."""

    recent: list[float] = field(default_factory=list)  # epoch seconds
    in_flight: dict[str, int] = field(default_factory=dict)
    alive: dict[str, float] = field(default_factory=dict)  # controller -> last stamp

    @classmethod
    def decode(cls, body: bytes | None) -> Counts:
        """A key's value read back (none yet: empty)."""
        value: Json = loads(body or b"")
        return cls([float(t) for t in value.get("recent", [])],
                   {str(k): int(v) for k, v in value.get("inFlight", {}).items()},
                   {str(k): float(v) for k, v in value.get("alive", {}).items()})

    def encode(self) -> bytes:
        """The key's value."""
        return dumps({"recent": self.recent, "inFlight": self.in_flight, "alive": self.alive})

    def pruned(self, now: float) -> Counts:
        """Without admissions past the window and the counts of controllers gone silent."""
        alive = {c: t for c, t in self.alive.items() if now - t < STALE_S}
        return Counts([t for t in self.recent if t > now - WINDOW_S],
                      {c: n for c, n in self.in_flight.items() if c in alive and n > 0},
                      alive)


def key_of(namespace: str) -> str:
    """The namespace's key: its name in hex (a key takes few characters)."""
    return "ns-" + namespace.encode().hex()


class SharedThrottle:
    """The namespace throttles of every controller on the broker (`InvocationThrottle`'s
    limits, counted in one place): a `SharedCounts`."""

    def __init__(self, kv: KeyValue, limits: NamespaceLimits, controller_id: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.limits = limits
        self.controller_id = controller_id
        self.clock = clock
        self._held: dict[str, int] = {}  # namespace -> this controller's in flight
        self._locks: dict[str, asyncio.Lock] = {}

    async def admit(self, namespace: str) -> None:
        """Count one invocation against the namespace on every controller, or refuse it."""
        def admitted(counts: Counts, now: float) -> Counts:
            total = sum(counts.in_flight.values())
            if len(counts.recent) >= self.limits.invocations_per_minute:
                raise TooManyRequests(
                    f"Too many requests in the last minute (count: {len(counts.recent)}, "
                    f"allowed: {self.limits.invocations_per_minute}).")
            if total >= self.limits.concurrent_invocations:
                raise TooManyRequests(
                    f"Too many concurrent requests in flight (count: {total}, "
                    f"allowed: {self.limits.concurrent_invocations}).")
            counts.recent.append(now)
            return self._counted(counts, namespace, 1)
        await self._change(namespace, admitted)

    async def hold(self, namespace: str) -> None:
        """Count an activation in flight without admitting it."""
        await self._change(namespace, lambda counts, _: self._counted(counts, namespace, 1))

    async def release(self, namespace: str) -> None:
        """The activation ended."""
        await self._change(namespace, lambda counts, _: self._counted(counts, namespace, -1))

    async def in_flight(self, namespace: str) -> int:
        """Activations of the namespace in flight on every controller."""
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            entry = await self.kv.get(key_of(namespace))
            return sum(Counts.decode(entry.value).pruned(self.clock()).in_flight.values())
        return 0

    @contextlib.asynccontextmanager
    async def stamping(self, local: Callable[[str], int] | None = None
                       ) -> AsyncIterator[SharedThrottle]:
        """Until exit, stamp the keys where this controller holds activations; `local`:
        its own count of a namespace's activations in flight, which each stamp writes."""
        def stamped(namespace: str) -> Callable[[Counts, float], Counts]:
            def stamp(counts: Counts, _: float) -> Counts:
                if local is not None:
                    counts.in_flight[self.controller_id] = local(namespace)
                return counts
            return stamp

        async def loop() -> None:
            while True:
                await asyncio.sleep(ALIVE_S)
                for namespace in [n for n, held in self._held.items()
                                  if held > 0 or (local is not None and local(n) > 0)]:
                    try:
                        await self._change(namespace, stamped(namespace))
                    except nats.errors.Error:
                        logger.warning("throttle of %s not stamped", namespace, exc_info=True)

        async with running_in_background(loop()):
            yield self

    def _counted(self, counts: Counts, namespace: str, change: int) -> Counts:
        counts.in_flight[self.controller_id] = max(0, self._held.get(namespace, 0) + change)
        return counts

    async def _change(self, namespace: str,
                      change: Callable[[Counts, float], Counts]) -> None:
        """Read, change and write the key, again from the read when another controller
        wrote first; this controller's own changes of a key are made one at a time."""
        key = key_of(namespace)
        async with self._locks.setdefault(namespace, asyncio.Lock()):
            while True:
                try:
                    entry = await self.kv.get(key)
                    body, revision = entry.value, entry.revision
                except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                    body, revision = None, None
                now = self.clock()
                counts = change(Counts.decode(body).pruned(now), now)
                counts.alive[self.controller_id] = now
                try:
                    if revision is None:
                        await self.kv.create(key, counts.encode())
                    else:
                        await self.kv.update(key, counts.encode(), last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue
                self._held[namespace] = counts.in_flight.get(self.controller_id, 0)
                return


async def throttle_bucket(js: JetStreamContext) -> KeyValue:
    """The throttles' bucket, created when missing (no TTL: the counts prune themselves)."""
    try:
        return await js.key_value(BUCKET)
    except (nats.js.errors.BucketNotFoundError, nats.errors.Error):
        return await js.create_key_value(bucket=BUCKET, history=1)
