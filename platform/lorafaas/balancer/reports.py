"""What placement reads: each invoker's report of its capacity and what it holds loaded, and
the function to place."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lorafaas.invoking.activations import FunctionRef


class Locality(enum.IntEnum):
    """How ready an invoker is to run a function, best first."""

    WARM = 0  # a warm container of the function, or its adapter loaded in a namespace container
    PRELOADED = 1  # a container with the function's artifacts loaded ahead of its request
    NAMESPACE = 2  # a namespace container of its namespace and backbone: loads the adapter only
    STEM = 3  # a free stem cell of its backbone (libraries and backbone loaded)
    COLD = 4  # nothing: a new container


@dataclass(frozen=True)
class NamespaceContainer:
    """One container serving several functions of one namespace on one backbone."""

    namespace: str
    backbone: str
    functions: frozenset[str]  # the functions (paths) whose adapters it holds loaded


@dataclass(frozen=True)
class InvokerReport:
    """One invoker's heartbeat: its capacity now and what it holds loaded."""

    invoker_id: str
    at: float  # when it was sent (seconds, the controller's clock)
    slots: int  # activations it runs at once
    slots_free: int
    memory_free_mb: int  # for a new container, idle ones it would evict counted free
    queued: int = 0  # activations waiting for a slot
    warm: frozenset[str] = frozenset()  # functions (paths) with a warm container
    preloaded: frozenset[str] = frozenset()  # functions with a pre-loaded container
    namespace_containers: tuple[NamespaceContainer, ...] = ()
    stem_cells: dict[str, int] = field(default_factory=dict)  # backbone -> free stem cells

    @property
    def utilisation(self) -> float:
        """Its load as a share of its slots: in use plus waiting (1.0: full, no queue)."""
        if self.slots <= 0:
            return 1.0
        return (self.slots - self.slots_free + self.queued) / self.slots


@dataclass(frozen=True)
class Target:
    """The function to place: the namespace it runs for (its containers' trust boundary),
    its action's path, its backbone, the memory a new container of it takes, and whether it
    may share its namespace's container."""

    namespace: str
    action: str  # namespace/package/name, as FunctionRef.path writes it
    backbone: str = ""
    memory_mb: int = 0
    shareable: bool = True  # may run in its namespace's container (no owner code)

    @classmethod
    def of(cls, function: FunctionRef) -> Target:
        """The target of an activation of `function`."""
        return cls(function.name.namespace, function.path, function.backbone,
                   function.memory_mb, not function.runs_alone)
