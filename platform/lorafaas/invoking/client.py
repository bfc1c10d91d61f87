"""The one interface the controller reaches invokers through (as vLLM's `EngineClient`).

The controller submits an activation and waits for its result (`run`); a streamed one hands
its text deltas to a sink as they come, and the sink cancels the generation by raising
`StreamCancelled`; giving up the wait (cancelling the awaiting task) withdraws an activation
still queued. It retires a function that was updated or deleted, tells the invoker of a
function deployed (`prepare`, so that its prefill is profiled before its first request),
and reads what is loaded where: per function (`describe_function`), the whole pool
(`snapshot`) and the invoker's Prometheus metrics. Reads are synchronous: the in-process
invoker answers from memory, a remote one from the latest state its invokers reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    DeltaSink,
    FunctionRef,
)
from lorafaas.names import QualifiedName


@dataclass(frozen=True)
class FunctionView:
    """What the invoker holds of one function, as the action's GET shows it."""

    instances: list[dict[str, object]]  # its containers
    keep_alive: dict[str, Any]  # the keep-alive policy in force for it
    prefill_model: dict[str, Any]  # the T(b) its batches are sized by


@dataclass(frozen=True)
class Eviction:
    """One container the pool removed."""

    at: float  # epoch seconds
    container: str  # its engine name
    function: str | None  # namespace/name, None for a stem cell
    state: str  # what it was when removed: prewarmed, preloaded, warm, starting...
    backbone: str
    memory_mb: int
    idle_s: float  # since its last use (or creation)
    uses: int  # activations it served
    reason: str


@dataclass(frozen=True)
class InvokerSnapshot:
    """What is loaded where, for the console's platform page."""

    # One view per container: container, function, state, memoryMB, idleSeconds, pid, ...
    containers: list[dict[str, Any]]
    pool_memory_mb: int | None  # the pool's size in container limits (None: not known)
    evictions: list[Eviction]  # the pool's recent evictions, newest first


@dataclass(frozen=True)
class MetricsText:
    """The invoker's metrics in Prometheus' text format."""

    body: str
    content_type: str


class InvokerClient(Protocol):
    """Submit, stream, cancel and retire; read what is loaded where."""

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        """Run the activation to its end (never raises for a failed action); with
        `on_delta`, stream its text deltas."""
        ...

    async def retire(self, name: QualifiedName) -> None:
        """The action `name` was updated or deleted: nothing of its old versions is kept."""
        ...

    def prepare(self, function: FunctionRef) -> None:
        """A function was deployed: get ready for its first request."""
        ...

    def describe_function(self, function: FunctionRef) -> FunctionView:
        """The function's containers, keep-alive policy and prefill model."""
        ...

    def snapshot(self) -> InvokerSnapshot:
        """Every container, with its function and state, and the pool's size."""
        ...

    def metrics(self) -> MetricsText:
        """Queue lengths, batches running, batch sizes, SLO attainment, containers."""
        ...
