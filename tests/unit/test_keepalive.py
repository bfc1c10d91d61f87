"""The hybrid histogram keep-alive policy: pre-warm and keep-alive follow a function's idle times."""

from __future__ import annotations

import random

import pytest

from lorafaas.invoker.keepalive import (
    IdleTimeHistogram,
    KeepAliveConfig,
    KeepAlivePolicy,
    decide,
)

MINUTE = 60.0


def arrivals(policy: KeepAlivePolicy, key: str, times: list[float]) -> None:
    """Record requests of a function arriving at the given times."""
    for at in times:
        policy.record_arrival(key, at)


def test_defaults_are_the_papers_but_the_fallback() -> None:
    config = KeepAliveConfig()
    assert (config.bin_s, config.range_s, config.bins) == (60, 4 * 3600, 240)
    assert (config.head_percentile, config.tail_percentile, config.margin) == (5, 99, 0.1)
    assert config.cv_threshold == 2 and config.fixed_keepalive_s == 180


def test_unknown_function_gets_the_fixed_keepalive() -> None:
    decision = KeepAlivePolicy().decision("never-called")
    assert (decision.policy, decision.prewarm_window_s, decision.keepalive_s) == ("fixed", 0, 180)


def test_too_few_idle_times_fixed() -> None:
    policy = KeepAlivePolicy(KeepAliveConfig(min_samples=10, fixed_keepalive_s=120))
    arrivals(policy, "f", [i * 5 * MINUTE for i in range(10)])  # 9 idle times
    decision = policy.decision("f")
    assert (decision.policy, decision.prewarm_window_s, decision.keepalive_s) == ("fixed", 0, 120)
    assert "9 idle times" in decision.reason
    policy.record_arrival("f", 10 * 5 * MINUTE)
    assert policy.decision("f").policy == "histogram"


def test_every_five_minutes_prewarms_before_and_keeps_past_the_next_arrival() -> None:
    policy = KeepAlivePolicy()
    arrivals(policy, "f", [i * 5 * MINUTE for i in range(50)])
    decision = policy.decision("f")
    assert decision.policy == "histogram"
    # idle 300 s falls in bin [300, 360): pre-warm at 300 × 0.9, keep until 360 × 1.1
    assert decision.prewarm_window_s == pytest.approx(270)
    assert decision.prewarm_window_s + decision.keepalive_s == pytest.approx(396)
    assert decision.prewarm_window_s < 5 * MINUTE < decision.prewarm_window_s + decision.keepalive_s


def test_idle_time_counts_from_the_end_of_the_execution() -> None:
    policy = KeepAlivePolicy()
    for i in range(30):
        policy.record_arrival("f", i * 10 * MINUTE)
        policy.record_end("f", i * 10 * MINUTE + 3 * MINUTE)  # 3-minute executions
    decision = policy.decision("f")
    # idle 7 min: bin [420, 480)
    assert decision.prewarm_window_s == pytest.approx(420 * 0.9)
    assert decision.prewarm_window_s + decision.keepalive_s == pytest.approx(480 * 1.1)


def test_frequent_function_stays_loaded() -> None:
    policy = KeepAlivePolicy()
    arrivals(policy, "f", [i * 20.0 for i in range(100)])
    decision = policy.decision("f")
    assert decision.policy == "histogram"
    assert decision.prewarm_window_s == 0
    assert decision.keepalive_s == pytest.approx(66)


def test_uniform_spread_is_not_predictable() -> None:
    rng = random.Random(3)
    policy = KeepAlivePolicy()
    at = 0.0
    for _ in range(1000):
        at += rng.uniform(0, 4 * 3600)
        policy.record_arrival("f", at)
    decision = policy.decision("f")
    assert decision.policy == "fixed"
    assert "CV" in decision.reason


def test_idle_times_beyond_the_range_fixed() -> None:
    policy = KeepAlivePolicy()
    arrivals(policy, "f", [i * 5 * 3600.0 for i in range(20)])
    decision = policy.decision("f")
    assert decision.policy == "fixed"
    assert "100% of idle times beyond" in decision.reason


def test_percentiles_and_margins_on_a_constructed_histogram() -> None:
    config = KeepAliveConfig(bin_s=60, range_s=600, margin=0.2, cv_threshold=0)
    histogram = IdleTimeHistogram(config)
    # 100 idle times: 4 in bin 1, 90 in bin 3, 5 in bin 6, 1 in bin 9
    for minute, count in [(1, 4), (3, 90), (6, 5), (9, 1)]:
        for _ in range(count):
            histogram.record(minute * 60 + 30)
    assert histogram.percentile_bin(5) == 3  # 4% lie below bin 3, 94% by its end
    assert histogram.percentile_bin(99) == 6
    assert histogram.percentile_bin(100) == 9
    decision = decide(histogram, config)
    assert decision.prewarm_window_s == pytest.approx(180 * 0.8)
    assert decision.prewarm_window_s + decision.keepalive_s == pytest.approx(420 * 1.2)


def test_coefficient_of_variation_of_bin_counts() -> None:
    config = KeepAliveConfig(bin_s=1, range_s=4)
    histogram = IdleTimeHistogram(config)
    for idle in [0.5, 0.5, 1.5, 1.5, 1.5, 1.5, 3.2, 3.9]:  # counts 2, 4, 0, 2
        histogram.record(idle)
    # mean 2, population standard deviation sqrt(2)
    assert histogram.coefficient_of_variation() == pytest.approx(2**0.5 / 2)
    histogram.record(99)
    assert (histogram.in_range, histogram.out_of_range, histogram.samples) == (8, 1, 9)


def test_one_function_does_not_leak_into_another() -> None:
    policy = KeepAlivePolicy()
    arrivals(policy, "a", [i * 5 * MINUTE for i in range(50)])
    assert policy.decision("b").policy == "fixed"
    policy.forget("a")
    assert policy.decision("a").policy == "fixed"


@pytest.mark.parametrize("knob,value", [("bin_s", 0), ("margin", 1.0), ("tail_percentile", 101),
                                        ("min_samples", 0), ("head_percentile", 100)])
def test_bad_knob_is_named(knob: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"{knob}={value!r}"):
        KeepAliveConfig(**{knob: value})  # type: ignore[arg-type]


def test_the_fixed_policy_ignores_a_predictable_pattern() -> None:
    config = KeepAliveConfig(policy="fixed", fixed_keepalive_s=600)
    policy = KeepAlivePolicy(config)
    for minute in range(40):  # a clear 5-minute period the histogram policy would use
        policy.record_arrival("f", minute * 5 * MINUTE)
        policy.record_end("f", minute * 5 * MINUTE + 1)
    decision = policy.decision("f")
    assert (decision.policy, decision.prewarm_window_s, decision.keepalive_s) == ("fixed", 0, 600)
    assert decide(policy._histograms["f"], config).policy == "fixed"
    assert KeepAlivePolicy().decision("f").reason.startswith("0 idle times")
