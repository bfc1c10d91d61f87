"""When to pre-load a function's container and how long to keep it: the hybrid histogram policy.

Shahrad et al., "Serverless in the Wild" (USENIX ATC 2020), section 4.2: each function keeps a
histogram of its idle times (the time from the end of one execution to the next arrival) in
1-minute bins up to a range of 4 hours. When the histogram is representative, the container
is unloaded after an execution, loaded again after the pre-warm window (the head, 5th
percentile, less a 10% margin), and kept until the tail (99th percentile, plus 10%). When it is
not (too few idle times, counts spread evenly over the bins, or too many idle times beyond the
range) a fixed keep-alive applies from the end of the execution, with no pre-warm. The `fixed`
policy applies it always, as OpenWhisk does (with its 10 minutes).

Left out of the paper's policy: the ARIMA forecast for functions whose idle times mostly fall
beyond the range (they get the fixed keep-alive here), and any ageing of old idle times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class KeepAliveConfig:
    """The policy's knobs; the defaults are the paper's, except where a comment says not."""

    bin_s: float = 60.0
    range_s: float = 4 * 3600.0
    head_percentile: float = 5.0
    tail_percentile: float = 99.0
    margin: float = 0.10  # the head shrinks and the tail grows by this fraction
    cv_threshold: float = 2.0  # bin counts with a lower coefficient of variation: no pattern
    out_of_range_threshold: float = 0.5  # not a paper figure; beyond it the paper uses ARIMA
    min_samples: int = 10  # not a paper figure: below it the percentiles mean little
    # The paper falls back to its range (4 h). This platform restarts a function from a stem
    # cell in ~150 ms, so an unpredictable function is not worth minutes of a container.
    fixed_keepalive_s: float = 180.0
    policy: Literal["histogram", "fixed"] = "histogram"

    def __post_init__(self) -> None:
        checks = {
            "bin_s": self.bin_s > 0,
            "range_s": self.range_s >= self.bin_s,
            "head_percentile": 0 <= self.head_percentile <= self.tail_percentile,
            "tail_percentile": self.head_percentile <= self.tail_percentile <= 100,
            "margin": 0 <= self.margin < 1,
            "cv_threshold": self.cv_threshold >= 0,
            "out_of_range_threshold": 0 <= self.out_of_range_threshold <= 1,
            "min_samples": self.min_samples >= 1,
            "fixed_keepalive_s": self.fixed_keepalive_s >= 0,
            "policy": self.policy in ("histogram", "fixed"),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"keep-alive setting {name}={getattr(self, name)!r} is invalid")

    @property
    def bins(self) -> int:
        """The number of histogram bins."""
        return math.ceil(self.range_s / self.bin_s)


@dataclass(frozen=True)
class KeepAliveDecision:
    """When to load a function's container after an execution ends, and for how long.

    The container is loaded `prewarm_window_s` after the end of an execution (0: it stays
    loaded) and kept `keepalive_s` from then, unless a request arrives.
    """

    prewarm_window_s: float
    keepalive_s: float
    policy: Literal["histogram", "fixed"]
    reason: str


class IdleTimeHistogram:
    """A function's idle times in fixed bins, with the sums that give the bins' CV in O(1)."""

    __slots__ = ("bin_s", "counts", "in_range", "out_of_range", "sum_squares")

    def __init__(self, config: KeepAliveConfig) -> None:
        self.counts = [0] * config.bins
        self.in_range = 0
        self.out_of_range = 0
        self.sum_squares = 0  # of the bin counts
        self.bin_s = config.bin_s

    def record(self, idle_s: float) -> None:
        """Count one idle time."""
        index = int(max(0.0, idle_s) // self.bin_s)
        if index >= len(self.counts):
            self.out_of_range += 1
            return
        count = self.counts[index]
        self.counts[index] = count + 1
        self.sum_squares += 2 * count + 1  # (c + 1)² - c²
        self.in_range += 1

    @property
    def samples(self) -> int:
        """Idle times recorded, in range or not."""
        return self.in_range + self.out_of_range

    def coefficient_of_variation(self) -> float:
        """Standard deviation over mean of the bin counts (0 with no count in range)."""
        if self.in_range == 0:
            return 0.0
        mean = self.in_range / len(self.counts)
        variance = max(0.0, self.sum_squares / len(self.counts) - mean * mean)
        return math.sqrt(variance) / mean

    def percentile_bin(self, percentile: float) -> int:
        """The first bin at which the in-range counts reach the percentile."""
        target = self.in_range * percentile / 100
        cumulative = 0
        for index, count in enumerate(self.counts):
            cumulative += count
            if cumulative >= target and cumulative > 0:
                return index
        return len(self.counts) - 1


def decide(histogram: IdleTimeHistogram, config: KeepAliveConfig) -> KeepAliveDecision:
    """The decision for a function from its idle-time histogram."""
    if config.policy == "fixed":
        return _fixed(config, "the fixed policy is configured")
    if histogram.samples < config.min_samples:
        return _fixed(config, f"{histogram.samples} idle times, fewer than {config.min_samples}")
    share = histogram.out_of_range / histogram.samples
    if share >= config.out_of_range_threshold:
        return _fixed(config, f"{share:.0%} of idle times beyond {config.range_s:g} s")
    cv = histogram.coefficient_of_variation()
    if cv < config.cv_threshold:
        return _fixed(config, f"no pattern: CV of bin counts {cv:.2f} < {config.cv_threshold:g}")
    return _from_histogram(histogram, config, cv)


def _fixed(config: KeepAliveConfig, reason: str) -> KeepAliveDecision:
    """The fixed keep-alive from the end of each execution, with no pre-warm."""
    return KeepAliveDecision(0.0, config.fixed_keepalive_s, "fixed", reason)


def _from_histogram(histogram: IdleTimeHistogram, config: KeepAliveConfig, cv: float
                    ) -> KeepAliveDecision:
    """Pre-warm at the head's lower edge less the margin, keep to the tail's upper edge plus it."""
    head = histogram.percentile_bin(config.head_percentile) * config.bin_s
    tail = (histogram.percentile_bin(config.tail_percentile) + 1) * config.bin_s
    prewarm = head * (1 - config.margin)
    until = tail * (1 + config.margin)
    reason = (f"{histogram.samples} idle times, CV {cv:.2f}: head {head:g} s, tail {tail:g} s,"
              f" margin {config.margin:.0%}")
    return KeepAliveDecision(prewarm, until - prewarm, "histogram", reason)


class KeepAlivePolicy:
    """Idle-time histograms of every function, fed with arrivals and ends of executions."""

    def __init__(self, config: KeepAliveConfig | None = None) -> None:
        self.config = config or KeepAliveConfig()
        self._histograms: dict[str, IdleTimeHistogram] = {}
        self._idle_since: dict[str, float] = {}

    def record_arrival(self, key: str, at_s: float) -> None:
        """Count the idle time that a request arriving at `at_s` ends; O(1)."""
        since = self._idle_since.get(key)
        if since is not None:
            self._histogram(key).record(at_s - since)
        # until its end is recorded, idle times are counted from the arrival
        self._idle_since[key] = at_s

    def record_end(self, key: str, at_s: float) -> None:
        """Start the function's idle time at the end of an execution; O(1)."""
        self._idle_since[key] = max(at_s, self._idle_since.get(key, at_s))

    def decision(self, key: str) -> KeepAliveDecision:
        """The pre-warm window and keep-alive in force for a function, and why."""
        if self.config.policy == "fixed":
            return _fixed(self.config, "the fixed policy is configured")
        histogram = self._histograms.get(key)
        if histogram is None:
            return _fixed(self.config, f"0 idle times, fewer than {self.config.min_samples}")
        return decide(histogram, self.config)

    def forget(self, key: str) -> None:
        """Drop a function's state, when it is deleted."""
        self._histograms.pop(key, None)
        self._idle_since.pop(key, None)

    def _histogram(self, key: str) -> IdleTimeHistogram:
        """The function's histogram, created on its first idle time."""
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = IdleTimeHistogram(self.config)
        return histogram
