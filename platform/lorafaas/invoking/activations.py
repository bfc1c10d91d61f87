"""What crosses the seam for one activation: the function, the request, its text deltas and
its result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafaas.names import QualifiedName

LORA_KIND = "lora"  # an adapter on a shared backbone; every other kind is a code action
# Takes each text delta of a streamed activation as it comes.
DeltaSink = Callable[[str], Awaitable[None]]


class StreamCancelled(Exception):
    """Raised by a delta sink whose reader has left: the generation is to stop."""


@dataclass(frozen=True)
class FunctionRef:
    """What the invoker needs of an action to start and reuse its containers."""

    key: str  # namespace/package/name@version:digest: containers reuse only the same code
    name: QualifiedName  # the name it runs under, in the namespace it runs for
    adapter_dir: Path
    memory_mb: int
    adapter_digest: str = ""  # keys the artifact profiles measured for this code
    backbone: str = ""  # the backbone's name ("": the pool's default backbone)
    adapter_rank: int | None = None  # the LoRA rank validation found: keys its prefill fit
    # `lora`, or a code action's kind (`python:3`): its folder then holds the code, and its
    # containers have no backbone.
    kind: str = LORA_KIND
    has_handler: bool = False  # a lora function with its own `__main__.py`: never shared

    @property
    def is_code(self) -> bool:
        """Whether it is a code action (no adapter, no backbone)."""
        return self.kind != LORA_KIND

    @property
    def runs_alone(self) -> bool:
        """Whether each request runs by itself in a container (owner code runs there)."""
        return self.is_code or self.has_handler

    @property
    def path(self) -> str:
        """`namespace/package/name`: the string the pool, metrics and labels key it by."""
        return str(self.name)


@dataclass(frozen=True)
class ArtifactLoad:
    """One artifact loaded by a start: into which tier, in how long (ms), taking how many bytes."""

    artifact: str
    tier: str
    load_ms: float
    memory_bytes: int


@dataclass(frozen=True)
class ActivationRequest:
    """One invocation as the controller hands it to the invoker."""

    activation_id: str
    namespace: str
    name: str
    version: str
    subject: str
    function: FunctionRef
    parameters: dict[str, Any]
    limits: dict[str, Any]
    received_at: float  # epoch seconds when the controller accepted it
    # The action's own name when it runs through a binding (`function.name` is the binding's).
    bound: QualifiedName | None = None
    cause: str | None = None  # the sequence activation it runs in, if any
    # Its pending row is written (non-blocking): run it where it outlives its invoker.
    durable: bool = False


@dataclass(frozen=True)
class ActivationResult:
    """The finished activation, ready to be stored as OpenWhisk's record."""

    start_ms: int
    end_ms: int
    status_code: int
    response: dict[str, Any]
    logs: list[str]
    annotations: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)  # the runtime's, ms (metering)
    loads: tuple[ArtifactLoad, ...] = ()  # artifacts its start loaded, measured in full
    # Whether this activation accounts for its container's start (one per batch does).
    reports_start: bool = True
