"""The invoker's metrics in Prometheus text format 0.0.4, parsed strictly."""

from __future__ import annotations

import math
import re

from lorafaas.invoker.metrics import Gauges, InvokerMetrics, render

# A sample line: name, optional {label="value",...}, a value (no timestamps here).
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="'
                    r'(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]],
                                                   float]]:
    """The TYPE of each family and every sample's value; fails on a malformed line."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"{name} described twice"
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            match = SAMPLE.match(line)
            assert match, f"malformed sample line: {line!r}"
            name, labels, value = match.groups()
            key = (name, frozenset(LABEL.findall(labels or "")))
            assert key not in samples, f"{line!r} repeated"
            samples[key] = float(value)
    return types, samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """One sample's value."""
    return samples[(name, frozenset(labels.items()))]


def test_every_figure_is_exposed_per_function() -> None:
    metrics = InvokerMetrics()
    for size in (1, 3, 3, 8):
        metrics.observe_batch("guest/pirate", size)
    metrics.record_served("guest/pirate", 0.0, 500.0, 1000.0)
    metrics.record_served("guest/pirate", 0.0, 1500.0, 1000.0)  # late: a miss
    metrics.record_failed("guest/pirate")
    gauges = Gauges(queue_lengths={"guest/pirate": 2, "guest/shout": 0}, batches_running=1,
                    max_concurrent_batches=2, containers={"busy": 1, "idle": 2})
    types, samples = parse(render(metrics, gauges))
    assert types["lorafaas_batch_size"] == "histogram"
    assert types["lorafaas_requests_served_total"] == "counter"
    assert value(samples, "lorafaas_queue_length", function="guest/pirate") == 2
    assert value(samples, "lorafaas_queue_length", function="guest/shout") == 0
    assert value(samples, "lorafaas_batches_running") == 1
    assert value(samples, "lorafaas_batches_running_max") == 2
    buckets = {le: value(samples, "lorafaas_batch_size_bucket", function="guest/pirate", le=le)
               for le in ("1.0", "2.0", "3.0", "4.0", "8.0", "+Inf")}
    assert buckets == {"1.0": 1, "2.0": 1, "3.0": 3, "4.0": 3, "8.0": 4, "+Inf": 4}  # cumulative
    assert value(samples, "lorafaas_batch_size_sum", function="guest/pirate") == 15
    assert value(samples, "lorafaas_batch_size_count", function="guest/pirate") == 4
    assert value(samples, "lorafaas_requests_served_total", function="guest/pirate") == 2
    assert value(samples, "lorafaas_slo_misses_total", function="guest/pirate") == 1
    assert value(samples, "lorafaas_slo_attainment", function="guest/pirate") == 0.5
    assert math.isnan(value(samples, "lorafaas_slo_attainment", function="guest/shout"))
    assert value(samples, "lorafaas_requests_failed_total", function="guest/pirate") == 1
    assert value(samples, "lorafaas_containers", state="idle") == 2


def test_label_values_are_escaped() -> None:
    metrics = InvokerMetrics()
    odd = 'ns/a"b\\c\nd'
    metrics.observe_batch(odd, 1)
    text = render(metrics, Gauges({}, 0, 1, {}))
    assert 'function="ns/a\\"b\\\\c\\nd"' in text
    parse(text)
