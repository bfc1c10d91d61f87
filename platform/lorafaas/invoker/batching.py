"""Fill-or-expire batching per function and contention-aware ordering (pure, no clock).

The formulas, with times in milliseconds and T(b) = T0 + α·(b−1) the profiled prefill:
- a function's batch holds at most N = ⌊(SLO − T0)/α⌋ + 1 requests (capped): the largest
  batch whose predicted time to first token still meets the SLO;
- with M batches sharing the accelerator, a batch of b is predicted to take M·T(b);
- a batch closes when it holds N requests, or when its oldest request's slack
  SLO − wait − M·T(N) runs out;
- ready batches go least deadline margin first: Δ = SLO − (wait of the oldest + M·T(b));
- a request that can no longer meet its SLO is still served, and counted as a miss.

Every function takes the current time as an argument, so the logic is deterministic.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from lorafaas.wire.prefill_fit import PrefillModel, fit_prefill_model

__all__ = [
    "Batch", "FunctionQueue", "PrefillModel", "QueuedRequest", "SloCounts", "SloLedger",
    "contention", "dispatch_order", "fit_prefill_model", "implausible_model", "max_batch_size",
    "order_by_deadline_margin",
]

T = TypeVar("T")
# Below this per-request cost (ms) batching is free: only the configured cap limits N.
NEGLIGIBLE_ALPHA_MS = 1e-9
# How many times slower than the default T(b) a profiled one may be and still be believed: a
# fit measured while other work loaded the machine (T0 and α twenty times the quiet figures)
# would size every batch to 1 for good.
PLAUSIBLE_SLOWDOWN = 8.0


def max_batch_size(slo_ms: float, model: PrefillModel, cap: int) -> int:
    """N = ⌊(SLO − T0)/α⌋ + 1, within 1…cap."""
    if cap < 1:
        raise ValueError(f"the batch size cap must be at least 1, not {cap}")
    if model.alpha_ms <= NEGLIGIBLE_ALPHA_MS:
        return cap
    # An SLO below T0 cannot be met at any size: serve one at a time, the least late.
    return max(1, min(cap, math.floor((slo_ms - model.t0_ms) / model.alpha_ms) + 1))


def implausible_model(model: PrefillModel, default: PrefillModel) -> str | None:
    """Why a profiled T(b) is not to be believed against the default one; None if it is."""
    if not (math.isfinite(model.t0_ms) and math.isfinite(model.alpha_ms)):
        return "not finite"
    if model.t0_ms <= 0 or model.alpha_ms < 0:
        return f"T0 {model.t0_ms:.1f} ms or α {model.alpha_ms:.1f} ms out of range"
    if model.t0_ms > PLAUSIBLE_SLOWDOWN * default.t0_ms:
        return f"T0 {model.t0_ms:.1f} ms over {PLAUSIBLE_SLOWDOWN:g}× the default {default.t0_ms:g}"
    if model.alpha_ms > PLAUSIBLE_SLOWDOWN * max(default.alpha_ms, NEGLIGIBLE_ALPHA_MS):
        return (f"α {model.alpha_ms:.1f} ms over {PLAUSIBLE_SLOWDOWN:g}× the default "
                f"{default.alpha_ms:g}")
    return None


def contention(running: int, max_concurrent: int) -> int:
    """M for a batch about to start: those running plus itself, capped by configuration."""
    if max_concurrent < 1:
        raise ValueError(f"the concurrent batch cap must be at least 1, not {max_concurrent}")
    return max(1, min(running + 1, max_concurrent))


@dataclass(frozen=True)
class QueuedRequest(Generic[T]):
    """A request waiting in its function's queue, with the time it arrived."""

    item: T
    arrived_ms: float


@dataclass(frozen=True)
class Batch(Generic[T]):
    """A closed batch of one function, oldest request first."""

    function: str
    requests: tuple[QueuedRequest[T], ...]
    closed_ms: float
    slo_ms: float

    def waits_ms(self) -> list[float]:
        """Each request's time in the queue."""
        return [self.closed_ms - r.arrived_ms for r in self.requests]


class FunctionQueue(Generic[T]):
    """One function's requests waiting to be batched; it never drops one."""

    def __init__(self, function: str, slo_ms: float, model: PrefillModel, cap: int) -> None:
        if slo_ms <= 0:
            raise ValueError(f"the SLO of {function!r} must be positive, not {slo_ms}")
        self.function = function
        self.slo_ms = slo_ms
        self.model = model
        self.size = max_batch_size(slo_ms, model, cap)
        self._pending: deque[QueuedRequest[T]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def push(self, item: T, now_ms: float) -> None:
        """Enqueue a request that arrived now."""
        if self._pending and now_ms < self._pending[-1].arrived_ms:
            raise ValueError("requests must be pushed in arrival order")
        self._pending.append(QueuedRequest(item, now_ms))

    def discard(self, item: T) -> bool:
        """Take back a request that no longer waits (its caller gave up); True if it was here."""
        for queued in self._pending:
            if queued.item is item:
                self._pending.remove(queued)
                return True
        return False

    def oldest_wait(self, now_ms: float) -> float:
        """How long the oldest request has waited (0 when empty)."""
        return now_ms - self._pending[0].arrived_ms if self._pending else 0.0

    def slack(self, now_ms: float, m: int) -> float:
        """SLO − wait − M·T(N): how much longer the oldest can wait for the batch to fill."""
        return self.slo_ms - self.oldest_wait(now_ms) - _checked(m) * self.model.time(self.size)

    def ready(self, now_ms: float, m: int) -> bool:
        """Whether the batch should close now: it is full, or its slack has run out."""
        return len(self) >= self.size or (len(self) > 0 and self.slack(now_ms, m) <= 0)

    def expires_at(self, m: int) -> float | None:
        """When the oldest request's slack runs out, for the invoker's timer (None if empty)."""
        if not self._pending:
            return None
        return self._pending[0].arrived_ms + self.slo_ms - _checked(m) * self.model.time(self.size)

    def deadline_margin(self, now_ms: float, m: int) -> float:
        """Δ = SLO − (wait of the oldest + M·T(b)) for the batch it would close now."""
        batch_size = max(1, min(len(self), self.size))
        return self.slo_ms - (self.oldest_wait(now_ms) + _checked(m) * self.model.time(batch_size))

    def take_batch(self, now_ms: float, limit: int | None = None) -> Batch[T]:
        """Close a batch of up to N (or `limit`) oldest requests, late ones included."""
        if not self._pending:
            raise ValueError(f"the queue of {self.function!r} is empty")
        count = min(len(self._pending), self.size if limit is None else limit)
        requests = tuple(self._pending.popleft() for _ in range(count))
        return Batch(self.function, requests, now_ms, self.slo_ms)


def _checked(m: int) -> int:
    if m < 1:
        raise ValueError(f"M (batches sharing the accelerator) must be at least 1, not {m}")
    return m


def order_by_deadline_margin(queues: Iterable[FunctionQueue[T]], now_ms: float,
                             m: int) -> list[FunctionQueue[T]]:
    """The non-empty queues, least deadline margin first (ties: oldest wait, then name)."""
    waiting = [q for q in queues if len(q)]
    return sorted(waiting, key=lambda q: (q.deadline_margin(now_ms, m), -q.oldest_wait(now_ms),
                                          q.function))


def dispatch_order(queues: Iterable[FunctionQueue[T]], now_ms: float,
                   m: int) -> list[FunctionQueue[T]]:
    """The queues whose batch should close now, in the order to run them."""
    return [q for q in order_by_deadline_margin(queues, now_ms, m) if q.ready(now_ms, m)]


@dataclass
class SloCounts:
    """Requests served, and how many of them missed their SLO."""

    served: int = 0
    missed: int = 0


class SloLedger:
    """Per-function SLO accounting: every request is served, a late one is counted."""

    def __init__(self) -> None:
        self._counts: dict[str, SloCounts] = {}

    def record(self, function: str, arrived_ms: float, first_token_ms: float,
               slo_ms: float) -> bool:
        """Count one served request; return whether its first token came after its SLO."""
        counts = self._counts.setdefault(function, SloCounts())
        missed = first_token_ms - arrived_ms > slo_ms
        counts.served += 1
        counts.missed += int(missed)
        return missed

    def record_batch(self, batch: Batch[T], first_token_ms: float) -> int:
        """Count every request of a served batch; return how many missed."""
        return sum(self.record(batch.function, r.arrived_ms, first_token_ms, batch.slo_ms)
                   for r in batch.requests)

    def counts(self, function: str) -> SloCounts:
        """The function's counts (zero if it served nothing)."""
        found = self._counts.get(function, SloCounts())
        return SloCounts(found.served, found.missed)

    def total(self) -> SloCounts:
        """Counts over every function."""
        return SloCounts(sum(c.served for c in self._counts.values()),
                         sum(c.missed for c in self._counts.values()))
