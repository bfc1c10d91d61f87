"""Bucketing a function's activations and charges into the charts' windows."""

from __future__ import annotations

import itertools

import pytest

from lorafaas.console.timeline import (
    WINDOWS,
    Charge,
    Request,
    bucket,
    bucket_starts,
    window_of,
)
from lorafaas.errors import BadRequest

MINUTE = 60_000
NOW = 1_764_669_960_000 + 25_000  # 25 s into 10:06 UTC
HOUR = WINDOWS["1h"]


def test_buckets_are_aligned_and_the_last_holds_now() -> None:
    starts = bucket_starts(HOUR, NOW)
    assert len(starts) == 60 and starts[-1] == NOW - 25_000
    assert all(b - a == MINUTE for a, b in itertools.pairwise(starts))
    assert [len(bucket_starts(w, NOW)) for w in WINDOWS.values()] == [60, 24, 28]
    assert bucket_starts(WINDOWS["24h"], NOW)[-1] % 3_600_000 == 0


def test_requests_ttft_and_cold_share_per_bucket() -> None:
    last = NOW - 25_000
    requests = [Request(last + 1_000, 900.0, "cold"),
                Request(last + 2_000, 100.0, "warm"),
                Request(last + 3_000, 120.0, "warm"),
                Request(last + 4_000, None, None),  # refused before it ran
                Request(last - MINUTE, 300.0, "prewarm"),
                Request(last - 2 * MINUTE, 50.0, "preloaded")]
    timeline = bucket(requests, [], HOUR, NOW)
    assert timeline.requests[-3:] == [1, 1, 4]
    assert timeline.ttft_p50[-1] == 120.0 and timeline.ttft_p99[-1] == 900.0
    # 1 cold of the 3 that ran; the refused one counts as a request but not in the share.
    assert timeline.cold_share[-1] == pytest.approx(100 / 3)
    assert timeline.cold_share[-2] == 100.0  # a stem cell loaded the function: cold
    assert timeline.cold_share[-3] == 0.0  # pre-loaded: loaded ahead, no cold start
    assert timeline.ttft_p50[0] is None and timeline.cold_share[0] is None  # nothing there
    assert timeline.busy_buckets() == [57, 58, 59]


def test_only_refused_requests_give_no_latency_and_no_share() -> None:
    timeline = bucket([Request(NOW, None, None)], [], HOUR, NOW)
    assert (timeline.requests[-1], timeline.ttft_p50[-1], timeline.cold_share[-1]) == (
        1, None, None)


def test_cost_is_summed_per_bucket_as_a_rate_per_hour() -> None:
    last = NOW - 25_000
    charges = [Charge(last, 0.001), Charge(last + 30_000, 0.002), Charge(last - MINUTE, 0.01)]
    timeline = bucket([], charges, HOUR, NOW)
    # A minute's bucket: its cost times 60 is the hourly rate.
    assert timeline.cost_per_hour[-1] == pytest.approx(0.18)
    assert timeline.cost_per_hour[-2] == pytest.approx(0.6)
    assert sum(timeline.cost_per_hour[:-2]) == 0
    day = bucket([], charges, WINDOWS["24h"], NOW)  # an hour's bucket: the sum itself
    assert day.cost_per_hour[-1] == pytest.approx(0.013)


def test_what_lies_outside_the_window_is_left_out() -> None:
    first = bucket_starts(HOUR, NOW)[0]
    requests = [Request(first - 1, 10.0, "warm"), Request(first, 20.0, "warm"),
                Request(NOW - 25_000 + MINUTE, 30.0, "warm")]  # the next minute: not yet
    timeline = bucket(requests, [Charge(first - 1, 1.0)], HOUR, NOW)
    assert sum(timeline.requests) == 1 and timeline.requests[0] == 1
    assert sum(timeline.cost_per_hour) == 0


def test_chart_data_labels_each_bucket_in_utc() -> None:
    data = bucket([], [], HOUR, NOW).chart_data()
    assert data["window"] == "1h" and data["bucketSeconds"] == 60
    assert len(data["labels"]) == 60 and data["labels"][-1] == "10:06"
    assert set(data) >= {"requests", "ttftP50", "ttftP99", "coldShare", "costPerHour"}


def test_an_unknown_window_is_a_bad_request() -> None:
    assert window_of(None).key == "24h" and window_of("7d").key == "7d"
    with pytest.raises(BadRequest, match="one of 1h, 24h, 7d, not '2h'"):
        window_of("2h")
