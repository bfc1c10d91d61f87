"""The invoker's metrics, and their Prometheus text exposition (by prometheus_client).

Per function (label `function`, namespace/name): requests waiting in its batch queue, a
histogram of its batch sizes, requests served, SLO misses and attainment, and requests
failed; for the invoker: batches running (M) and its cap, containers by state, and per
backbone the stem cells that failed to start and how long the next one waits (backoff),
and whether its server is up and how often it was restarted; per namespace container
(label `container`, namespace/backbone) the composition of its shared decode's steps:
steps, requests and distinct functions summed over them, and the most functions in one
step (as its runtime last reported them).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lorafaas.invoker.batching import SloLedger

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@dataclass
class Histogram:
    """Counts of observations per upper bound (not cumulative), their sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """Count one observation."""
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at or below it), +Inf last, as Prometheus exposes buckets."""
        running, buckets = 0, []
        for bound, count in zip(self.bounds, self.counts or [0] * len(self.bounds),
                                strict=True):
            running += count
            buckets.append((floatToGoString(bound), float(running)))
        return [*buckets, ("+Inf", float(self.count))]


class InvokerMetrics:
    """What the dispatcher and the batch runner count, per function path."""

    def __init__(self) -> None:
        self.slo = SloLedger()
        self.batch_sizes: dict[str, Histogram] = {}
        self.failed: Counter[str] = Counter()

    def observe_batch(self, function: str, size: int) -> None:
        """A batch of `size` requests started."""
        self.batch_sizes.setdefault(function, Histogram(BATCH_SIZE_BUCKETS)).observe(size)

    def record_served(self, function: str, received_ms: float, first_token_ms: float,
                      slo_ms: float) -> bool:
        """A request got its outcome; return whether its first token missed the SLO."""
        return self.slo.record(function, received_ms, first_token_ms, slo_ms)

    def record_failed(self, function: str) -> None:
        """A request failed (its container, or the invoker, failed; or it timed out)."""
        self.failed[function] += 1

    def functions(self) -> set[str]:
        """Every function with something counted."""
        return set(self.batch_sizes) | set(self.failed)


@dataclass(frozen=True)
class Gauges:
    """The invoker's state at the time of a scrape."""

    queue_lengths: Mapping[str, int]
    batches_running: int
    max_concurrent_batches: int
    containers: Mapping[str, int]  # by state
    stem_failures: Mapping[str, int] = field(default_factory=dict)  # by backbone, in all
    stem_backoff_s: Mapping[str, float] = field(default_factory=dict)  # by backbone, left
    backbones_up: Mapping[str, bool] = field(default_factory=dict)  # by backbone
    backbone_restarts: Mapping[str, int] = field(default_factory=dict)  # by backbone, in all
    # Per namespace container: its runtime's step counters (`steps`, `stepRows`,
    # `stepFunctions`, `maxFunctionsPerStep`).
    namespace_steps: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


def render(metrics: InvokerMetrics, gauges: Gauges) -> str:
    """The Prometheus text exposition of the metrics and gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics, gauges))
    return generate_latest(registry).decode()


class _Snapshot(Collector):
    """The figures of one scrape, as prometheus_client's metric families."""

    def __init__(self, metrics: InvokerMetrics, gauges: Gauges) -> None:
        self.metrics = metrics
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        metrics, gauges = self.metrics, self.gauges
        functions = sorted(metrics.functions() | set(gauges.queue_lengths))
        queue = GaugeMetricFamily("lorafaas_queue_length",
                                  "Requests waiting in the function's batch queue.",
                                  labels=["function"])
        for function in functions:
            queue.add_metric([function], gauges.queue_lengths.get(function, 0))
        yield queue
        yield GaugeMetricFamily("lorafaas_batches_running",
                                "Batches executing at once on the accelerator (M).",
                                value=gauges.batches_running)
        yield GaugeMetricFamily("lorafaas_batches_running_max",
                                "The cap of M (LORAFAAS_MAX_CONCURRENT_BATCHES).",
                                value=gauges.max_concurrent_batches)
        yield self._batch_sizes(functions)
        yield from self._slo(functions)
        yield _per_function(CounterMetricFamily(
            "lorafaas_requests_failed", "Requests that failed in the invoker or their "
            "container, or timed out.", labels=["function"]),
            {f: metrics.failed[f] for f in functions})
        containers = GaugeMetricFamily("lorafaas_containers", "Containers of the pool by state.",
                                       labels=["state"])
        for state, count in sorted(gauges.containers.items()):
            containers.add_metric([state], count)
        yield containers
        yield from self._stem_cells()
        yield from self._backbone_servers()
        yield from self._namespace_steps()

    def _namespace_steps(self) -> Iterator[Metric]:
        label = ["container"]
        families: list[tuple[CounterMetricFamily | GaugeMetricFamily, str]] = [
            (CounterMetricFamily("lorafaas_namespace_steps", "Decode steps of the namespace "
                                 "container.", labels=label), "steps"),
            (CounterMetricFamily("lorafaas_namespace_step_requests", "Requests in its steps, "
                                 "summed over them.", labels=label), "stepRows"),
            (CounterMetricFamily("lorafaas_namespace_step_functions", "Distinct functions in "
                                 "its steps, summed over them.", labels=label), "stepFunctions"),
            (GaugeMetricFamily("lorafaas_namespace_max_functions_per_step", "Most functions "
                               "in one of its steps.", labels=label), "maxFunctionsPerStep")]
        for family, key in families:
            for container, steps in sorted(self.gauges.namespace_steps.items()):
                family.add_metric([container], steps.get(key, 0))
            yield family

    def _backbone_servers(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lorafaas_backbone_up", "1 while the backbone's server is up, "
                               "0 while it is down and being restarted.", labels=["backbone"])
        restarts = CounterMetricFamily("lorafaas_backbone_restarts", "Restarts of the "
                                       "backbone's server after it exited.",
                                       labels=["backbone"])
        for backbone, is_up in sorted(self.gauges.backbones_up.items()):
            up.add_metric([backbone], float(is_up))
            restarts.add_metric([backbone], self.gauges.backbone_restarts.get(backbone, 0))
        yield up
        yield restarts

    def _stem_cells(self) -> Iterator[Metric]:
        failures = CounterMetricFamily("lorafaas_stem_cell_failures", "Stem cells of the "
                                       "backbone that failed to start.", labels=["backbone"])
        waiting = GaugeMetricFamily("lorafaas_stem_cell_backoff_seconds", "How long the "
                                    "backbone waits before its next stem cell after failures.",
                                    labels=["backbone"])
        for backbone, count in sorted(self.gauges.stem_failures.items()):
            failures.add_metric([backbone], count)
            waiting.add_metric([backbone], self.gauges.stem_backoff_s.get(backbone, 0.0))
        yield failures
        yield waiting

    def _batch_sizes(self, functions: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily("lorafaas_batch_size",
                                       "Requests per batch sent to a container.",
                                       labels=["function"])
        for function in functions:
            histogram = self.metrics.batch_sizes.get(function, Histogram(BATCH_SIZE_BUCKETS))
            family.add_metric([function], histogram.cumulative(), histogram.total)
        return family

    def _slo(self, functions: list[str]) -> Iterator[Metric]:
        counts = {f: self.metrics.slo.counts(f) for f in functions}
        yield _per_function(CounterMetricFamily(
            "lorafaas_requests_served", "Requests of the function that got their outcome "
            "from a container.", labels=["function"]), {f: c.served for f, c in counts.items()})
        yield _per_function(CounterMetricFamily(
            "lorafaas_slo_misses", "Served requests whose first token came after the "
            "function's slo_ttft_ms.", labels=["function"]),
            {f: c.missed for f, c in counts.items()})
        yield _per_function(GaugeMetricFamily(
            "lorafaas_slo_attainment", "Share of served requests that met the SLO (NaN "
            "before the first).", labels=["function"]),
            {f: (c.served - c.missed) / c.served if c.served else math.nan
             for f, c in counts.items()})


def _per_function(family: CounterMetricFamily | GaugeMetricFamily,
                  values: Mapping[str, float]) -> Metric:
    for function, number in values.items():
        family.add_metric([function], number)
    return family
