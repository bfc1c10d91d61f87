"""Measured artifact loads and the running estimate kept of them per function and artifact.

A cold or pre-warm start measures, for each artifact it loaded, the load time and the host
memory the artifact took (the runtime's /init). The estimate kept per (function's code,
artifact, tier) is an exponentially weighted moving mean, `new = old + WEIGHT·(sample − old)`,
the first sample taken as it is: load times drift with the machine's load and the page cache,
so recent loads count more than the mean over the function's whole life, and one slow load
(a busy neighbour) moves the estimate by a quarter of the difference only. The registry
keeps the same estimate, computed by the database (`lorafaas.registry.profiles`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lorafaas.invoking.activations import ArtifactLoad

EWMA_WEIGHT = 0.25
ARTIFACTS = ("libraries", "backbone", "adapter", "tokenizer", "kernels")  # load order
TIERS = ("disk", "host", "accelerator")
HOST = "host"  # where the runtime loads artifacts to, and the tier it sizes

# (artifact, tier) -> estimate, for one function's code
Estimates = dict[tuple[str, str], "LoadEstimate"]


@dataclass(frozen=True)
class LoadEstimate:
    """The running estimate of an artifact's load into a tier, over `samples` loads."""

    load_ms: float
    memory_bytes: int
    samples: int


def measured_loads(breakdown: Mapping[str, float], memory: Mapping[str, int],
                   tier: str = HOST) -> list[ArtifactLoad]:
    """The loads a start measured in full (time and size), in load order.

    An artifact without a size (from a runtime image older than the measurement) is left
    out: a time alone would store a profile whose memory means nothing. The fixed order
    makes concurrent writers of one function's rows lock them in the same order.
    """
    return [ArtifactLoad(name, tier, float(breakdown[name]), int(memory[name]))
            for name in ARTIFACTS if name in breakdown and name in memory]


def ewma(previous: float, sample: float) -> float:
    """One step of the exponentially weighted moving mean."""
    return previous + EWMA_WEIGHT * (sample - previous)


def next_estimate(previous: LoadEstimate | None, load: ArtifactLoad) -> LoadEstimate:
    """The estimate after one more load (the first load is the estimate)."""
    if previous is None:
        return LoadEstimate(load.load_ms, load.memory_bytes, 1)
    return LoadEstimate(ewma(previous.load_ms, load.load_ms),
                        round(ewma(previous.memory_bytes, load.memory_bytes)),
                        previous.samples + 1)


class ProfileBook:
    """The estimates of every function's code, keyed by its path and adapter digest."""

    def __init__(self) -> None:
        self._estimates: dict[tuple[str, str], Estimates] = {}

    def record(self, path: str, digest: str, loads: Sequence[ArtifactLoad]) -> None:
        """Fold the loads of one start into the function's estimates."""
        estimates = self._estimates.setdefault((path, digest), {})
        for load in loads:
            key = (load.artifact, load.tier)
            estimates[key] = next_estimate(estimates.get(key), load)

    def seed(self, stored: Iterable[tuple[str, str, str, str, LoadEstimate]]) -> None:
        """Take estimates stored earlier: (path, digest, artifact, tier, estimate) each."""
        for path, digest, artifact, tier, estimate in stored:
            self._estimates.setdefault((path, digest), {})[(artifact, tier)] = estimate

    def of(self, path: str, digest: str) -> Estimates:
        """The function's estimates (empty when nothing was measured)."""
        return dict(self._estimates.get((path, digest), {}))
