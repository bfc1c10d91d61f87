"""Placement over the broker: the invokers' heartbeats read as the balancer's reports, and
the order in which the controller's client tries invokers for an activation.

The balancer (`lorafaas.balancer`) picks the first invoker: the function's home refined by
locality and load. The others follow in the function's probe order (OpenWhisk's overflow),
for when the first refuses or does not answer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from lorafaas.balancer.placement import Balancer, BalancerConfig
from lorafaas.balancer.reports import InvokerReport, NamespaceContainer, Target
from lorafaas.balancer.ring import probe_order, stable_hash
from lorafaas.broker.heartbeats import Heartbeat
from lorafaas.broker.topology import HEARTBEAT_TTL_S
from lorafaas.invoking.activations import FunctionRef

# The pool's container states (`ContainerState` values) as the snapshot names them.
STEM, PRELOADED, WARM, BUSY = "prewarmed", "preloaded", "warm", "busy"
EVICTABLE = frozenset({STEM, PRELOADED, WARM})  # idle: their memory serves a new container
NAMESPACE_KIND = "namespace"  # a container's "kind" when it serves a namespace's functions
UNBOUNDED_MB = 1 << 30  # the memory free of a pool of no known size


def report_of(heartbeat: Heartbeat) -> InvokerReport:
    """What the balancer weighs of an invoker, from its heartbeat."""
    warm: set[str] = set()
    preloaded: set[str] = set()
    stems: Counter[str] = Counter()
    namespaces: dict[tuple[str, str], set[str]] = {}
    held_mb = 0
    for container in heartbeat.snapshot.containers:
        state, backbone = str(container.get("state")), str(container.get("backbone", ""))
        if state not in EVICTABLE:
            held_mb += int(container.get("memoryMB", 0))
        if container.get("kind") == NAMESPACE_KIND:
            if state in (WARM, BUSY):  # and the functions whose adapters it holds
                namespaces.setdefault((_namespace_of(container), backbone), set()).update(
                    str(path) for path in container.get("functions", ()))
        elif state == STEM:
            stems[backbone] += 1
        elif state == PRELOADED:
            preloaded.add(str(container.get("function")))
        elif state in (WARM, BUSY):
            warm.add(str(container.get("function")))
    pool_mb = heartbeat.snapshot.pool_memory_mb
    return InvokerReport(
        heartbeat.invoker_id, heartbeat.at, heartbeat.max_inflight,
        max(0, heartbeat.max_inflight - heartbeat.inflight),
        UNBOUNDED_MB if pool_mb is None else max(0, pool_mb - held_mb),
        warm=frozenset(warm), preloaded=frozenset(preloaded),
        namespace_containers=tuple(NamespaceContainer(n, b, frozenset(held))
                                   for (n, b), held in sorted(namespaces.items())),
        stem_cells=dict(stems))


def _namespace_of(container: dict[str, Any]) -> str:
    """A namespace container's namespace: the first part of its path."""
    return str(container.get("function", "")).split("/", 1)[0]


class Placer:
    """The controller's placement state, kept in step with the heartbeats."""

    def __init__(self, config: BalancerConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.balancer = Balancer(config or BalancerConfig(stale_after_s=HEARTBEAT_TTL_S))
        self.clock = clock

    def seen(self, heartbeat: Heartbeat) -> None:
        """An invoker's heartbeat came."""
        self.balancer.update(report_of(heartbeat))

    def gone(self, invoker_id: str) -> None:
        """An invoker deleted its heartbeat (it stopped)."""
        self.balancer.remove(invoker_id)

    def order(self, function: FunctionRef) -> list[str]:
        """The invokers to try, the balancer's choice first (counted as sent there until
        `ended`), then the function's overflow order; none when no invoker is live."""
        placement = self.balancer.place(Target.of(function), self.clock())
        if placement is None:
            return []
        rest = [i for i in self.home_order(function) if i != placement.invoker_id]
        return [placement.invoker_id, *rest]

    def ended(self, invoker_id: str) -> None:
        """An activation `order` sent there ended (or was refused)."""
        self.balancer.release(invoker_id)

    def home_order(self, function: FunctionRef) -> list[str]:
        """The live invokers in the function's probe order, its home first; nothing counted."""
        live = self.balancer.live(self.clock())
        hashed = stable_hash(function.name.namespace, function.path)
        return [live[i] for i in probe_order(hashed, len(live))]
