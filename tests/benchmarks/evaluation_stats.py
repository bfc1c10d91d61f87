"""The evaluation's arithmetic, pure (no I/O, no clock): picking the bursty and the steady
window of a trace, percentiles, costs, and the serverful crossover load."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def inter_arrival_cv(times_s: Sequence[float]) -> float:
    """Coefficient of variation of the gaps between sorted arrival times (0 below 3)."""
    ordered = sorted(times_s)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    if len(gaps) < 2:
        return 0.0
    mean = statistics.fmean(gaps)
    return statistics.pstdev(gaps) / mean if mean > 0 else 0.0


@dataclass(frozen=True)
class Window:
    """A window of a trace: its start (minutes from the first arrival) and burstiness."""

    start_min: int
    length_min: int
    cv: float
    requests: int


def trace_windows(times_s: Sequence[float], length_min: int, step_min: int = 1) -> list[Window]:
    """Every window of `length_min` minutes starting each `step_min` that fits the trace."""
    if not times_s:
        return []
    end_s = max(times_s)
    windows = []
    start = 0
    while (start + length_min) * 60 <= end_s:
        inside = [t for t in times_s if start * 60 <= t < (start + length_min) * 60]
        windows.append(Window(start, length_min, inter_arrival_cv(inside), len(inside)))
        start += step_min
    return windows


def bursty_and_steady(windows: Sequence[Window]) -> dict[str, Window]:
    """The window of highest inter-arrival CV (bursty) and of lowest (steady)."""
    if not windows:
        raise ValueError("the trace is shorter than one window")
    return {"bursty": max(windows, key=lambda w: (w.cv, -w.start_min)),
            "steady": min(windows, key=lambda w: (w.cv, w.start_min))}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def always_on_cost(window_s: float, memory_gb: float, accelerator_second: float,
                   gb_second: float) -> float:
    """USD of keeping one accelerator and `memory_gb` of memory for the whole window."""
    return window_s * (accelerator_second + memory_gb * gb_second)


def per_thousand(cost: float, requests: int) -> float:
    """Cost per 1,000 served requests (NaN when none was served)."""
    return cost / requests * 1000 if requests else math.nan


def crossover_rate(rates: Sequence[float], serverless_per_k: Sequence[float],
                   serverful_per_k: Sequence[float]) -> tuple[float | None, bool]:
    """The load (requests/s) from which the always-on reference costs less per request.

    The first measured rate where it does, above one where it does not (and True). Else an
    extrapolation (and False) from the lowest rate measured when the reference is cheaper
    already there, from the highest when it never is: its fixed cost is spread over
    requests in proportion to the rate, and the serverless cost per request stays as
    measured. None without data.
    """
    points = sorted((r, s, f) for r, s, f in zip(rates, serverless_per_k, serverful_per_k,
                                                 strict=True)
                    if not (math.isnan(s) or math.isnan(f)))
    if not points:
        return None, False
    cheaper = [serverful <= serverless for _, serverless, serverful in points]
    if not cheaper[0] and any(cheaper):
        return points[cheaper.index(True)][0], True
    rate, serverless, serverful = points[0] if cheaper[0] else points[-1]
    return (rate * serverful / serverless if serverless > 0 else None), False


def duplicated_share(copies: int) -> float:
    """Share of the backbone bytes in memory that are duplicates, with `copies` copies."""
    return (copies - 1) / copies if copies > 0 else 0.0
