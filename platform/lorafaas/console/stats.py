"""Numbers the console shows, computed from activation records (no HTTP, no templates)."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from lorafaas.console.pages import ActivationRow, Percentiles, UsageLine
from lorafaas.registry.models import Activation

TTFT_EDGES_MS = (50, 100, 200, 500, 1000, 2000, 5000, 10000)


def annotation(row: Activation, key: str) -> Any:
    """One annotation's value, or None."""
    return next((a.get("value") for a in row.annotations if a.get("key") == key), None)


def cost_of(row: Activation) -> float | None:
    """The activation's billed cost: the `cost` annotation, a number or `{"total": ...}`."""
    cost = annotation(row, "cost")
    if isinstance(cost, dict):
        cost = cost.get("total", cost.get("amount"))
    return float(cost) if isinstance(cost, int | float) else None


def usage_of(row: Activation) -> dict[str, int]:
    """Prompt and completion tokens from the result's `usage` (zeros when absent)."""
    result = row.response.get("result")
    usage = result.get("usage") if isinstance(result, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    return {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0)}


def when(ms: int) -> str:
    """A time in UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day_of(ms: int) -> str:
    """The UTC day of a time."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def start_of_today_ms(now: float | None = None) -> int:
    """Midnight UTC of today, in epoch milliseconds."""
    now = time.time() if now is None else now
    return int(now // 86400 * 86400 * 1000)


def activation_row(row: Activation) -> ActivationRow:
    """The summary of one record for lists and headers."""
    ttft = annotation(row, "ttft")
    return ActivationRow(activation_id=row.activation_id, name=row.name, start=when(row.start_ms),
                         duration_ms=row.end_ms - row.start_ms,
                         ttft_ms=float(ttft) if isinstance(ttft, int | float) else None,
                         start_kind=annotation(row, "startKind"),
                         status=str(row.response.get("status", "")),
                         success=bool(row.response.get("success")), cost=cost_of(row))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def percentiles(label: str, values: Sequence[float]) -> Percentiles:
    """p50, p90 and p99 of some latencies."""
    return Percentiles(label, percentile(values, 50), percentile(values, 90),
                       percentile(values, 99), len(values))


def latency_percentiles(rows: Sequence[Activation]) -> list[Percentiles]:
    """Percentiles of time to first token and of duration."""
    ttfts = [r.ttft_ms for r in map(activation_row, rows) if r.ttft_ms is not None]
    return [percentiles("time to first token", ttfts),
            percentiles("duration", [float(r.end_ms - r.start_ms) for r in rows])]


def ttft_buckets(rows: Iterable[Activation]) -> list[tuple[str, int]]:
    """A histogram of time to first token over fixed edges."""
    counts = [0] * (len(TTFT_EDGES_MS) + 1)
    for row in rows:
        ttft = annotation(row, "ttft")
        if isinstance(ttft, int | float):
            counts[sum(ttft >= edge for edge in TTFT_EDGES_MS)] += 1
    labels = [f"< {TTFT_EDGES_MS[0]} ms"]
    labels += [f"{a}–{b} ms" for a, b in itertools.pairwise(TTFT_EDGES_MS)]
    labels.append(f"≥ {TTFT_EDGES_MS[-1]} ms")
    return list(zip(labels, counts, strict=True))


def cost_chart(lines: Sequence[UsageLine]) -> dict[str, Any]:
    """Chart data: one stacked series per function over the days."""
    days = sorted({line.day for line in lines})
    functions = sorted({line.function for line in lines})
    cost = {(line.day, line.function): line.cost for line in lines}
    return {"labels": days,
            "series": [{"label": name, "data": [cost.get((day, name), 0.0) for day in days]}
                       for name in functions]}
