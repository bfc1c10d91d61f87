"""Artifact load measurements: the running estimate, the tracker's book, the planner's profile,
and the runtime's memory readings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorafaas.invoker.artifact_loads import (
    EWMA_WEIGHT,
    ArtifactLoad,
    LoadEstimate,
    ProfileBook,
    measured_loads,
    next_estimate,
)
from lorafaas.invoker.keepalive import KeepAlivePolicy
from lorafaas.invoker.maintenance import DEFAULT_BYTES, FunctionTracker, _profile
from lorafaas.invoker.pool import FunctionRef
from lorafaas.invoker.preloading import ArtifactKind, Tier
from lorafaas.names import QualifiedName
from lorafaas.runtime import memory

MB = 1024 * 1024
FUNCTION = FunctionRef("ns/fn@0.0.1:d1", QualifiedName.from_path("ns/fn"), Path("/x"), 2048, adapter_digest="d1")


def load(artifact: str, ms: float, size: int) -> ArtifactLoad:
    """A load into host memory."""
    return ArtifactLoad(artifact, "host", ms, size)


def test_first_load_is_the_estimate() -> None:
    assert next_estimate(None, load("adapter", 40.0, 3 * MB)) == LoadEstimate(40.0, 3 * MB, 1)


def test_estimate_moves_a_quarter_of_the_way_to_each_sample() -> None:
    assert EWMA_WEIGHT == 0.25
    estimate = next_estimate(None, load("adapter", 100.0, 1000))
    estimate = next_estimate(estimate, load("adapter", 200.0, 2000))
    assert estimate == LoadEstimate(125.0, 1250, 2)
    estimate = next_estimate(estimate, load("adapter", 125.0, 1250))
    assert estimate == LoadEstimate(125.0, 1250, 3)  # a sample at the estimate leaves it


def test_one_slow_load_does_not_take_over_the_estimate() -> None:
    estimate = None
    for _ in range(10):
        estimate = next_estimate(estimate, load("libraries", 1000.0, 300 * MB))
    estimate = next_estimate(estimate, load("libraries", 5000.0, 300 * MB))
    assert estimate is not None and estimate.load_ms == 2000.0 and estimate.samples == 11


def test_measured_loads_keep_artifacts_with_time_and_size_in_load_order() -> None:
    breakdown = {"kernels": 9.0, "adapter": 4.0, "libraries": 2500.0, "tokenizer": 3.0}
    sizes = {"adapter": 5 * MB, "kernels": 0, "libraries": 290 * MB}  # no tokenizer size
    loads = measured_loads(breakdown, sizes)
    assert [(x.artifact, x.tier, x.load_ms, x.memory_bytes) for x in loads] == [
        ("libraries", "host", 2500.0, 290 * MB), ("adapter", "host", 4.0, 5 * MB),
        ("kernels", "host", 9.0, 0)]
    assert measured_loads({"adapter": 4.0}, {}) == []  # an older runtime image sends no sizes


def test_profile_book_records_seeds_and_keys_by_digest() -> None:
    book = ProfileBook()
    book.seed([("ns/fn", "d1", "adapter", "host", LoadEstimate(100.0, 1000, 4))])
    book.record("ns/fn", "d1", [load("adapter", 200.0, 2000), load("tokenizer", 5.0, 10)])
    assert book.of("ns/fn", "d1") == {("adapter", "host"): LoadEstimate(125.0, 1250, 5),
                                      ("tokenizer", "host"): LoadEstimate(5.0, 10, 1)}
    assert book.of("ns/fn", "d2") == {}  # a new adapter is measured afresh


def test_tracker_profile_uses_measured_sizes_and_defaults_elsewhere() -> None:
    tracker = FunctionTracker(KeepAlivePolicy())
    tracker.arrived(FUNCTION, 100.0)
    tracker.ended(FUNCTION, 101.0, {"adapter": 40.0, "tokenizer": 7.0},
                  [load("adapter", 40.0, 3 * MB)])
    stats = tracker.stats[FUNCTION.key]
    profile = _profile(stats, 102.0, tracker.profiles.of(FUNCTION.path, FUNCTION.adapter_digest))
    adapter = profile.artifacts[ArtifactKind.ADAPTER]
    tokenizer = profile.artifacts[ArtifactKind.TOKENIZER]
    libraries = profile.artifacts[ArtifactKind.LIBRARIES]
    assert (adapter.load_ms[Tier.DISK], adapter.memory_bytes[Tier.HOST]) == (40.0, 3 * MB)
    # timed but not sized: its time, and the default size
    assert (tokenizer.load_ms[Tier.DISK], tokenizer.memory_bytes[Tier.HOST]) == (
        7.0, DEFAULT_BYTES[ArtifactKind.TOKENIZER])
    assert (libraries.load_ms[Tier.DISK], libraries.memory_bytes[Tier.HOST]) == (
        0.0, DEFAULT_BYTES[ArtifactKind.LIBRARIES])


def test_tracker_seeded_from_the_registry_plans_with_stored_profiles() -> None:
    tracker = FunctionTracker(KeepAlivePolicy())
    tracker.profiles.seed([("ns/fn", "d1", "libraries", "host",
                            LoadEstimate(2400.0, 280 * MB, 7))])
    tracker.arrived(FUNCTION, 100.0)
    profile = _profile(tracker.stats[FUNCTION.key], 101.0,
                       tracker.profiles.of(FUNCTION.path, FUNCTION.adapter_digest))
    libraries = profile.artifacts[ArtifactKind.LIBRARIES]
    assert (libraries.load_ms[Tier.DISK], libraries.memory_bytes[Tier.HOST]) == (2400.0, 280 * MB)


def test_runtime_reads_private_and_file_backed_memory(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmRSS:\t  9000 kB\nRssAnon:\t  3000 kB\n"
                      "RssFile:\t  5000 kB\nRssShmem:\t  1000 kB\n")
    monkeypatch.setattr(memory, "STATUS", status)
    assert memory.held_bytes() == 8000 * 1024  # the tmpfs-published weights are left out
    status.write_text("Name:\tpython\nVmRSS:\t  9000 kB\n")  # a kernel without the split
    assert memory.held_bytes() is None
    monkeypatch.setattr(memory, "STATUS", tmp_path / "missing")
    assert memory.held_bytes() is None


def test_runtime_growth_is_never_negative_and_unknown_stays_unknown() -> None:
    assert memory.grown(100, 350) == 250
    assert memory.grown(350, 100) == 0
    assert memory.grown(None, 100) is None and memory.grown(100, None) is None
    real = memory.held_bytes()
    assert real is not None and real > 0  # this test runs on Linux
