"""Choose the invoker of an activation from the invokers' latest reports.

OpenWhisk's sharding balancer, refined by locality: the function's home invoker (a stable
hash of namespace and action) and the invokers after it along its co-prime step are the
candidates, with overflow to the next one when an invoker is full; beside them, every
invoker where the function is warm, pre-loaded, or has its namespace's container comes from
an index keyed by function, so a decision never scans all invokers. Each candidate is
scored by what a start there costs (warm < pre-loaded < namespace container < stem cell <
cold) plus its load; the lowest wins, the home side on ties. An invoker whose heartbeat is
older than `stale_after_s` takes no work and leaves the index. Between two reports of an
invoker the balancer counts what it sent there itself (OpenWhisk's `dispatched`
semaphores) and treats a function it placed there as warm, so a burst follows its first
request instead of starting containers everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from lorafaas.balancer.reports import InvokerReport, Locality, Target
from lorafaas.balancer.ring import probe_order, stable_hash

NamespaceKey = tuple[str, str]  # namespace, backbone


@dataclass(frozen=True)
class BalancerConfig:
    """How placement weighs locality against load."""

    locality: bool = True  # False: OpenWhisk's plain home invoker with overflow
    stale_after_s: float = 10.0  # heartbeat age past which an invoker takes no work
    forget_after_s: float = 300.0  # past which it leaves the ring (home indices shift)
    probes: int = 3  # invokers with room along the probe sequence weighed beside the index
    max_indexed: int = 8  # of the invokers a function is loaded on, weighed per decision
    load_weight: float = 1.0  # score of a full invoker's load, against the start costs
    # The cost of a start by Locality (warm, pre-loaded, namespace, stem cell, cold), in
    # units of a full invoker's load: a warm invoker loses to an idle one with a stem cell
    # once it is (0.6 - 0) / load_weight busier.
    start_costs: tuple[float, float, float, float, float] = (0.0, 0.1, 0.3, 0.6, 1.0)
    sweep_period_s: float = 1.0  # how often stale invokers are swept from the index


@dataclass(frozen=True)
class Placement:
    """Where an activation goes and what start it should find there."""

    invoker_id: str
    locality: Locality
    forced: bool = False  # every live invoker was full: the least loaded one takes it


class Balancer:
    """The placement state of one controller: the latest report of each invoker, indices of
    what is loaded where, and what it dispatched since each report."""

    def __init__(self, config: BalancerConfig | None = None) -> None:
        self.config = config or BalancerConfig()
        self._reports: dict[str, InvokerReport] = {}
        self._ring: list[str] = []  # every known invoker, sorted: index -> invoker
        self._pending: dict[str, int] = defaultdict(int)  # dispatched since its report
        # invoker -> backbone -> its stem cells this balancer took since its report
        self._stems_taken: dict[str, dict[str, int]] = {}
        self._functions: dict[str, dict[str, Locality]] = defaultdict(dict)  # fn -> inv -> loc
        self._namespaces: dict[NamespaceKey, set[str]] = defaultdict(set)
        self._indexed: dict[str, tuple[set[str], set[NamespaceKey]]] = {}  # inv -> its keys
        self._turns: dict[str, int] = {}  # function -> where its window of invokers starts
        self._next_sweep = float("-inf")

    def update(self, report: InvokerReport) -> None:
        """Take an invoker's heartbeat: it replaces the previous one and what was counted."""
        invoker = report.invoker_id
        if invoker not in self._reports:
            self._ring.append(invoker)
            self._ring.sort()
        self._unindex(invoker)
        self._reports[invoker] = report
        self._pending.pop(invoker, None)
        self._stems_taken.pop(invoker, None)
        self._index(report)

    def release(self, invoker_id: str) -> None:
        """An activation sent there ended before the invoker's next report."""
        if self._pending.get(invoker_id, 0) > 0:
            self._pending[invoker_id] -= 1

    def remove(self, invoker_id: str) -> None:
        """Take an invoker out now (it left, or the broker saw it die)."""
        self._unindex(invoker_id)
        if self._reports.pop(invoker_id, None) is not None:
            self._ring.remove(invoker_id)
        self._pending.pop(invoker_id, None)
        self._stems_taken.pop(invoker_id, None)

    def live(self, now: float) -> list[str]:
        """The invokers whose heartbeat is fresh, in ring order."""
        return [i for i in self._ring if self._is_live(self._reports[i], now)]

    def sweep(self, now: float) -> None:
        """Drop stale invokers from the index, and forgotten ones from the ring."""
        self._next_sweep = now + self.config.sweep_period_s
        for invoker, report in list(self._reports.items()):
            age = now - report.at
            if age > self.config.forget_after_s:
                self.remove(invoker)
            elif age > self.config.stale_after_s:
                self._unindex(invoker)

    def place(self, target: Target, now: float) -> Placement | None:
        """The invoker to run an activation of `target` on (None: no invoker is live);
        counted as dispatched there."""
        if now >= self._next_sweep:
            self.sweep(now)
        best = self._best(self._candidates(target, now))
        if best is None:
            forced = self._least_loaded(now)
            if forced is None:
                return None
            best = Placement(forced, self._locality(self._reports[forced], target), True)
        self._dispatched(best, target)
        return best

    def _candidates(self, target: Target, now: float) -> dict[str, Locality]:
        """The invokers with room worth weighing, in order of preference on a tie."""
        found: dict[str, Locality] = {}
        probes = self.config.probes if self.config.locality else 1
        for index in probe_order(stable_hash(target.namespace, target.action), len(self._ring)):
            if len(found) >= probes:
                break
            self._consider(self._reports[self._ring[index]], target, now, found)
        if self.config.locality:
            for invoker in self._indexed_for(target):
                if invoker not in found:
                    self._consider(self._reports[invoker], target, now, found)
        return found

    def _consider(self, report: InvokerReport, target: Target, now: float,
                  found: dict[str, Locality]) -> None:
        """Add the invoker to `found` when it is live and has room for the function."""
        invoker = report.invoker_id
        if not self._is_live(report, now) or \
                report.slots_free - self._pending.get(invoker, 0) <= 0:
            return
        locality = self._locality(report, target)
        # A cold start needs memory for a new container; the other starts have it.
        if locality < Locality.COLD or target.memory_mb <= report.memory_free_mb:
            found[invoker] = locality

    def _indexed_for(self, target: Target) -> list[str]:
        """Up to `max_indexed` of the invokers where the function or its namespace's
        container is loaded; a function loaded on more is offered a rotating window of
        them, so that each decision stays short and its load spreads."""
        invokers = list(self._functions.get(target.action, ()))
        if target.shareable:
            invokers.extend(self._namespaces.get((target.namespace, target.backbone), ()))
        limit = self.config.max_indexed
        if len(invokers) <= limit:
            return invokers
        start = (self._turns.get(target.action, 0) + limit) % len(invokers)
        self._turns[target.action] = start
        window = invokers[start:start + limit]
        return window + invokers[:limit - len(window)]

    def _best(self, candidates: dict[str, Locality]) -> Placement | None:
        """The candidate of the lowest start cost plus load; the first one on a tie."""
        best: Placement | None = None
        best_score = float("inf")
        for invoker, locality in candidates.items():
            score = (self.config.start_costs[locality]
                     + self.config.load_weight * self._utilisation(invoker))
            if score < best_score:
                best, best_score = Placement(invoker, locality), score
        return best

    def _least_loaded(self, now: float) -> str | None:
        """The live invoker with the lowest load, to take work when all are full."""
        live = self.live(now)
        return min(live, key=self._utilisation) if live else None

    def _locality(self, report: InvokerReport, target: Target) -> Locality:
        """What start the function would find on that invoker."""
        invoker = report.invoker_id
        known = self._functions.get(target.action, {}).get(invoker)
        if known is not None:
            return known
        if target.shareable and \
                invoker in self._namespaces.get((target.namespace, target.backbone), ()):
            return Locality.NAMESPACE
        if self._free_stems(report, target.backbone) > 0:
            return Locality.STEM
        return Locality.COLD

    def _dispatched(self, placement: Placement, target: Target) -> None:
        """Count the activation against the invoker until its next report."""
        invoker = placement.invoker_id
        self._pending[invoker] += 1
        if placement.locality == Locality.STEM:
            taken = self._stems_taken.setdefault(invoker, {})
            taken[target.backbone] = taken.get(target.backbone, 0) + 1
        if placement.locality > Locality.PRELOADED:
            self._functions[target.action][invoker] = Locality.WARM
            self._indexed.setdefault(invoker, (set(), set()))[0].add(target.action)

    def _utilisation(self, invoker: str) -> float:
        """Its reported load plus what was sent since, as a share of its slots."""
        report = self._reports[invoker]
        pending = self._pending.get(invoker, 0)
        return report.utilisation + (pending / report.slots if report.slots > 0 else 1.0)

    def _free_stems(self, report: InvokerReport, backbone: str) -> int:
        """Its stem cells of that backbone not yet taken since its report."""
        taken = self._stems_taken.get(report.invoker_id, {}).get(backbone, 0)
        return report.stem_cells.get(backbone, 0) - taken

    def _is_live(self, report: InvokerReport, now: float) -> bool:
        """Whether its heartbeat is fresh."""
        return now - report.at <= self.config.stale_after_s

    def _index(self, report: InvokerReport) -> None:
        """Index what the report says is loaded there, by function and by namespace."""
        invoker = report.invoker_id
        functions, namespaces = self._indexed.setdefault(invoker, (set(), set()))
        for locality, names in ((Locality.PRELOADED, report.preloaded),
                                (Locality.WARM, report.warm)):
            for name in names:
                self._functions[name][invoker] = locality
                functions.add(name)
        for container in report.namespace_containers:
            key = (container.namespace, container.backbone)
            self._namespaces[key].add(invoker)
            namespaces.add(key)
            for name in container.functions:
                self._functions[name][invoker] = Locality.WARM
                functions.add(name)

    def _unindex(self, invoker: str) -> None:
        """Forget what the index holds of that invoker."""
        functions, namespaces = self._indexed.pop(invoker, (set(), set()))
        for name in functions:
            where = self._functions.get(name)
            if where is not None:
                where.pop(invoker, None)
                if not where:
                    del self._functions[name]
                    self._turns.pop(name, None)
        for key in namespaces:
            holders = self._namespaces.get(key)
            if holders is not None:
                holders.discard(invoker)
                if not holders:
                    del self._namespaces[key]
