"""A function's numbers over time, in fixed buckets: requests, TTFT p50/p99, the share of
cold starts, and the cost per hour (no HTTP, no templates, no database).

Buckets are aligned to their size in UTC (a minute, an hour, six hours), the last one is
the bucket `now` falls in. Requests count every activation; TTFT and the cold-start share
count only those that ran in a container (a request refused before it ran has neither);
the cost comes from the billing ledger, as the rate of each bucket's cost per hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lorafaas import start_kinds
from lorafaas.console.stats import percentile
from lorafaas.errors import BadRequest

HOUR_MS = 3_600_000
# The start kinds that loaded the function for the request: a new container, or a stem
# cell given the function. Pre-loaded and warm containers had it loaded already.
COLD_KINDS = frozenset({start_kinds.COLD, start_kinds.PREWARM})


@dataclass(frozen=True)
class Window:
    """How far back the charts look, and the size of one bucket."""

    key: str  # the `?window=` value
    label: str
    span_ms: int
    bucket_ms: int
    label_format: str  # strftime of a bucket's start, in UTC

    @property
    def buckets(self) -> int:
        """How many buckets the window holds."""
        return self.span_ms // self.bucket_ms


WINDOWS = {w.key: w for w in (
    Window("1h", "last hour, per minute", HOUR_MS, 60_000, "%H:%M"),
    Window("24h", "last 24 hours, per hour", 24 * HOUR_MS, HOUR_MS, "%H:%M"),
    Window("7d", "last 7 days, per 6 hours", 7 * 24 * HOUR_MS, 6 * HOUR_MS, "%m-%d %H:%M"),
)}
DEFAULT_WINDOW = "24h"


def window_of(raw: str | None) -> Window:
    """The window a `?window=` value names (the default when absent); a 400 otherwise."""
    key = raw or DEFAULT_WINDOW
    if key not in WINDOWS:
        raise BadRequest(f"The chart window must be one of {', '.join(WINDOWS)}, not {key!r}.")
    return WINDOWS[key]


@dataclass(frozen=True)
class Request:
    """What the charts need of one activation record."""

    start_ms: int
    ttft_ms: float | None
    start_kind: str | None  # None: refused before it ran in a container


@dataclass(frozen=True)
class Charge:
    """What the charts need of one billed activation in the ledger."""

    start_ms: int
    cost: float


@dataclass(frozen=True)
class Timeline:
    """One value per bucket for each series; None where a bucket has nothing to measure."""

    window: Window
    starts_ms: list[int]
    requests: list[int]
    ttft_p50: list[float | None]
    ttft_p99: list[float | None]
    cold_share: list[float | None]  # percent of the requests that ran
    cost_per_hour: list[float]

    def labels(self) -> list[str]:
        """Each bucket's start, in UTC."""
        return [datetime.fromtimestamp(ms / 1000, UTC).strftime(self.window.label_format)
                for ms in self.starts_ms]

    def chart_data(self) -> dict[str, Any]:
        """The series as the function page's charts read them."""
        return {"window": self.window.key, "bucketSeconds": self.window.bucket_ms // 1000,
                "labels": self.labels(), "requests": self.requests,
                "ttftP50": self.ttft_p50, "ttftP99": self.ttft_p99,
                "coldShare": self.cold_share, "costPerHour": self.cost_per_hour}

    def busy_buckets(self) -> list[int]:
        """Indexes of the buckets with any request or cost, oldest first."""
        return [i for i, (n, c) in enumerate(zip(self.requests, self.cost_per_hour,
                                                 strict=True)) if n or c]


def bucket_starts(window: Window, now_ms: int) -> list[int]:
    """The start of each bucket, oldest first; the last holds `now_ms`."""
    last = now_ms // window.bucket_ms * window.bucket_ms
    return [last - (window.buckets - 1 - i) * window.bucket_ms for i in range(window.buckets)]


def _index(window: Window, first_ms: int, at_ms: int) -> int | None:
    i = (at_ms - first_ms) // window.bucket_ms
    return i if 0 <= i < window.buckets else None


def bucket(requests: Iterable[Request], charges: Iterable[Charge], window: Window,
           now_ms: int) -> Timeline:
    """Put requests and charges into the window's buckets; those outside it are left out."""
    starts = bucket_starts(window, now_ms)
    counts = [0] * window.buckets
    ttfts: list[list[float]] = [[] for _ in starts]
    ran, cold = [0] * window.buckets, [0] * window.buckets
    for request in requests:
        i = _index(window, starts[0], request.start_ms)
        if i is None:
            continue
        counts[i] += 1
        if request.start_kind is None:
            continue
        ran[i] += 1
        cold[i] += request.start_kind in COLD_KINDS
        if request.ttft_ms is not None:
            ttfts[i].append(request.ttft_ms)
    cost = [0.0] * window.buckets
    for charge in charges:
        i = _index(window, starts[0], charge.start_ms)
        if i is not None:
            cost[i] += charge.cost
    per_hour = HOUR_MS / window.bucket_ms
    return Timeline(window, starts, counts, [percentile(t, 50) for t in ttfts],
                    [percentile(t, 99) for t in ttfts],
                    [100 * c / n if n else None for c, n in zip(cold, ran, strict=True)],
                    [c * per_hour for c in cost])

