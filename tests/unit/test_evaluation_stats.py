"""The evaluation's arithmetic: windows by burstiness, percentiles, costs, crossover."""

from __future__ import annotations

import math

import pytest

from tests.benchmarks.evaluation_stats import (
    always_on_cost,
    bursty_and_steady,
    crossover_rate,
    duplicated_share,
    inter_arrival_cv,
    per_thousand,
    percentile,
    trace_windows,
)


def test_evenly_spaced_arrivals_have_no_variation() -> None:
    assert inter_arrival_cv([0, 1, 2, 3, 4]) == 0.0
    assert inter_arrival_cv([0, 0.01, 0.02, 10, 10.01, 10.02]) > 1.0
    assert inter_arrival_cv([5]) == 0.0


def test_windows_pick_the_burst_and_the_calm() -> None:
    # Minutes 0-2: one arrival a second; minutes 2-4: bursts of ten every 30 s.
    steady = [float(t) for t in range(120)]
    bursty = [120 + 30 * k + 0.01 * i for k in range(4) for i in range(10)]
    windows = trace_windows(steady + bursty + [240.0], length_min=2)
    assert [w.start_min for w in windows] == [0, 1, 2]
    chosen = bursty_and_steady(windows)
    assert chosen["steady"].start_min == 0 and chosen["bursty"].start_min == 2
    assert chosen["bursty"].requests == 40


def test_no_window_fits_a_short_trace() -> None:
    with pytest.raises(ValueError, match="shorter than one window"):
        bursty_and_steady(trace_windows([0.0, 30.0], length_min=10))


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_always_on_cost_and_per_thousand() -> None:
    assert always_on_cost(3600, 2.0, 0.0735 / 3600, 0.001) == pytest.approx(0.0735 + 7.2)
    assert per_thousand(0.5, 250) == pytest.approx(2.0)
    assert math.isnan(per_thousand(1.0, 0))


def test_crossover_measured_or_extrapolated() -> None:
    # The reference's cost per request halves as the rate doubles; serverless stays at 1.
    assert crossover_rate([1, 2, 4], [1.0, 1.0, 1.0], [4.0, 2.0, 1.0]) == (4, True)
    rate, measured = crossover_rate([1, 2], [1.0, 1.0], [8.0, 4.0])
    assert not measured and rate == pytest.approx(8.0)
    # Cheaper already at the lowest rate measured: the crossover lies below it.
    rate, measured = crossover_rate([0.5], [0.2], [0.05])
    assert not measured and rate == pytest.approx(0.125)
    assert crossover_rate([], [], []) == (None, False)


def test_duplicated_share_of_the_backbone() -> None:
    assert duplicated_share(1) == 0.0
    assert duplicated_share(32) == pytest.approx(31 / 32)
    assert duplicated_share(0) == 0.0
