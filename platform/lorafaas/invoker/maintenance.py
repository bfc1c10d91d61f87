"""The pool's periodic work: health checks, stem cells, keep-alive, and pre-loading.

Every period it (1) removes idle containers that fail their health check, (2) keeps the
number of stem cells OpenWhisk's reactive pre-warm asks for (the minimum evicts pre-loaded,
then warm idle, containers to be kept), (3) unloads idle containers
whose keep-alive (from the hybrid histogram policy) has run out, or that the policy wants
unloaded until their pre-warm window, (4) pre-loads functions whose next request is
predicted, when the pre-loading plan holds their adapter within the pool's memory, and
(5) fills a share of the pool's memory with the functions of highest value density
(`spare_share`): their containers stay loaded past their keep-alive and, when they have
none, one is pre-loaded. With a shared backbone a loaded function costs little memory, so
spare memory serves best holding functions ready (ServerlessLoRA pre-loads every artifact
that fits); a cold start that needs the memory still evicts them, least recently used first.

With namespace containers (`lorafaas.invoker.sharing`), a function placed in its namespace's
container is loaded when its adapter is loaded there: pre-loading loads the adapter into
that container (weighed against the container's free adapter budget; a container that
must be started first is weighed as a function's own start), the spare share keeps the
container, and the container's keep-alive is the longest of the functions whose adapters
it holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from lorafaas.invoker.artifact_loads import HOST, ArtifactLoad, Estimates, ProfileBook
from lorafaas.invoker.containers import ContainerState, PooledContainer, is_namespace_key
from lorafaas.invoker.keepalive import KeepAliveDecision, KeepAlivePolicy
from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.invoker.preloading import (
    ArtifactKind,
    ArtifactProfile,
    Capacity,
    FunctionProfile,
    Tier,
    plan_preloading,
)
from lorafaas.invoker.prewarm import PrewarmConfig, desired_stem_cells
from lorafaas.invoker.sharing import NamespaceSharing

logger = logging.getLogger(__name__)
RATE_WINDOW_S = 3600.0
MB = 1024 * 1024
# Host memory an artifact holds when pre-loaded, until a start measures it: the libraries
# are the bulk of a container (the backbone itself is shared, not counted).
DEFAULT_BYTES = {ArtifactKind.LIBRARIES: 300 * MB, ArtifactKind.BACKBONE: 8 * MB,
                 ArtifactKind.ADAPTER: 8 * MB, ArtifactKind.TOKENIZER: 2 * MB,
                 ArtifactKind.KERNELS: 16 * MB}
# What loading an adapter into a running namespace container saves, until measured there
# (the native engine's reader: tens of milliseconds).
ADAPTER_LOAD_MS = 30.0


@dataclass
class FunctionStats:
    """What the invoker has seen of one function: its ref, arrivals, last end, load times."""

    function: FunctionRef
    arrivals: deque[float] = field(default_factory=deque)
    last_end: float | None = None
    load_ms: dict[str, float] = field(default_factory=dict)

    def rate_per_s(self, now: float) -> float:
        """Arrivals per second over the last hour."""
        while self.arrivals and self.arrivals[0] < now - RATE_WINDOW_S:
            self.arrivals.popleft()
        return len(self.arrivals) / RATE_WINDOW_S


class FunctionTracker:
    """Arrivals and ends of every function, feeding the keep-alive policy."""

    def __init__(self, policy: KeepAlivePolicy) -> None:
        self.policy = policy
        self.stats: dict[str, FunctionStats] = {}
        # Measured loads per function's code, seeded from the registry at start.
        self.profiles = ProfileBook()

    def arrived(self, function: FunctionRef, at_s: float) -> None:
        """A request for the function arrived."""
        stats = self.stats.setdefault(function.key, FunctionStats(function))
        stats.function = function
        stats.arrivals.append(at_s)
        self.policy.record_arrival(function.key, at_s)

    def ended(self, function: FunctionRef, at_s: float, breakdown: dict[str, float],
              loads: Sequence[ArtifactLoad] = ()) -> None:
        """An execution ended; `breakdown` holds the artifact load times it measured, `loads`
        those it measured in full (time and memory)."""
        stats = self.stats.setdefault(function.key, FunctionStats(function))
        stats.last_end = at_s
        stats.load_ms.update(breakdown)
        self.profiles.record(function.path, function.adapter_digest, loads)
        self.policy.record_end(function.key, at_s)

    def decision(self, function_key: str) -> KeepAliveDecision:
        """The keep-alive policy in force for a function."""
        return self.policy.decision(function_key)

    def forget(self, function_path: str) -> None:
        """Drop every version of an action that was updated or deleted: nothing is kept
        or pre-loaded for it any more."""
        for key in [k for k, s in self.stats.items() if s.function.path == function_path]:
            del self.stats[key]
            self.policy.forget(key)


class Maintenance:
    """Runs the periodic work until stopped."""

    def __init__(self, pool: ContainerPool, tracker: FunctionTracker, prewarm: PrewarmConfig,
                 period_s: float, preloading: bool = True, spare_share: float = 0.0,
                 sharing: NamespaceSharing | None = None) -> None:
        self.pool = pool
        self.sharing = sharing  # namespace containers, when on
        self.tracker = tracker
        self.prewarm = prewarm
        self.period_s = period_s
        self.preloading = preloading  # off: only stem cells (if any) are loaded ahead
        self.spare_share = spare_share  # of the pool's memory, held by the most valuable

    async def run(self) -> None:
        """Tick every period; a failed tick is logged and the next one runs."""
        while True:
            try:
                await self.tick(time.time())
            except Exception:
                logger.exception("pool maintenance failed")
            await asyncio.sleep(self.period_s)

    async def tick(self, now: float) -> None:
        """One round of the periodic work."""
        await self.pool.ensure_channels()  # a restarted backbone server lacks them
        await self.pool.health_check()
        if self.sharing is not None:  # which adapters each namespace container holds
            await self.sharing.refresh_steps()
        await self._keep_stem_cells(now)
        spare = self.spare_holdings(now)
        kept = self._kept_containers({function.key for function in spare})
        await self.pool.remove_idle(
            lambda c: c.info.id not in kept and self._expired(c, now), "keep-alive ended")
        if self.preloading:
            await self._preload_predicted(now)
            await self._preload_spare(spare)

    async def _keep_stem_cells(self, now: float) -> None:
        # Each backbone keeps its own stem cells: one attached to A never serves B.
        for backbone, cold_starts in self.pool.cold_starts.items():
            await self._keep_stem_cells_of(backbone, cold_starts.count(now), now)

    async def _keep_stem_cells_of(self, backbone: str, cold_starts: int, now: float) -> None:
        stems = [c for c in self.pool.containers()
                 if c.state is ContainerState.STEM and c.backbone == backbone]
        wanted = desired_stem_cells(self.prewarm, cold_starts)
        for n in range(len(stems), wanted):
            if not await self._add_stem_cell(backbone, n < self.prewarm.min_count, now):
                break
        surplus = len(stems) - max(wanted, self.prewarm.min_count)
        stale = sorted((c for c in stems if time.monotonic() - c.created > self.prewarm.ttl_s),
                       key=lambda c: c.created)[:max(0, surplus)]
        ids = {c.info.id for c in stale}
        await self.pool.remove_idle(lambda c: c.info.id in ids, "stem cell ttl ended")

    async def _add_stem_cell(self, backbone: str, evict: bool, now: float) -> bool:
        """Start one stem cell unless the backbone backs off; True if one started."""
        backoff = self.pool.stem_backoff
        if not backoff.allowed(backbone, now):
            return False
        try:
            # The minimum is a promise: it makes room by evicting pre-loaded containers.
            started = await self.pool.add_stem_cell(backbone, evict=evict)
        except Exception as error:  # noqa: BLE001 - any start failure backs off, and is logged
            delay = backoff.failed(backbone, now)
            logger.warning("a stem cell of backbone %s failed to start (%s); the next in %.0f s "
                           "(%d failures in a row)", backbone, error, delay,
                           backoff.states[backbone].in_a_row)
            return False
        if started:
            backoff.succeeded(backbone)
        return started

    def _expired(self, container: PooledContainer, now: float) -> bool:
        if container.function_key is None or container.state is ContainerState.STEM:
            return False
        idle_s = time.monotonic() - container.last_used
        if is_namespace_key(container.function_key):
            # Kept while any function whose adapter it holds would keep a container.
            held = self.sharing.holds(container) if self.sharing is not None else set()
            keys = held or {container.function_key}
            return idle_s > max(self.tracker.decision(key).keepalive_s for key in keys)
        decision = self.tracker.decision(container.function_key)
        if idle_s > decision.keepalive_s:
            return True
        # The hybrid policy unloads right after an execution when the next request is not
        # expected before the pre-warm window, and loads again when the window ends.
        stats = self.tracker.stats.get(container.function_key)
        return (container.state is ContainerState.IDLE and decision.prewarm_window_s > 0
                and stats is not None and stats.last_end is not None
                and now - stats.last_end < decision.prewarm_window_s)

    async def _preload_predicted(self, now: float) -> None:
        due = [s for s in self.tracker.stats.values() if self._preload_due(s, now)]
        if not due:
            return
        # A function whose namespace container runs costs only its adapter, in that
        # container's adapter budget; the others (one needing that container started too)
        # are weighed against the pool's free memory.
        in_running: dict[str, tuple[PooledContainer, list[FunctionStats]]] = {}
        others = []
        for stats in due:
            container = self._namespace_container(stats.function)
            if container is None:
                others.append(stats)
            else:
                in_running.setdefault(container.info.id, (container, []))[1].append(stats)
        await self._preload_planned(others, now, self._free_bytes(), adapter_only=False)
        for container, group in in_running.values():
            assert self.sharing is not None
            await self._preload_planned(group, now, self.sharing.free_adapter_bytes(container),
                                        adapter_only=True)

    async def _preload_planned(self, due: list[FunctionStats], now: float, free_bytes: int,
                               adapter_only: bool) -> None:
        """Pre-load those of `due` whose adapter the plan holds within `free_bytes`."""
        if not due:
            return
        profiles = self.tracker.profiles
        plan = plan_preloading([_profile(s, now, profiles.of(s.function.path,
                                                             s.function.adapter_digest),
                                         adapter_only) for s in due],
                               Capacity(host_bytes=free_bytes))
        for stats in due:
            held = {p.kind for p in plan.holdings.get(stats.function.key, ())}
            if ArtifactKind.ADAPTER in held:
                await self._preload(stats.function)

    async def _preload(self, function: FunctionRef) -> bool:
        """Load the function ahead: into its namespace container when it is placed there,
        else a container of its own."""
        if self.sharing is not None and self.sharing.shared_ref(function) is not None:
            return await self.sharing.preload(function)
        return await self.pool.preload(function)

    def _namespace_container(self, function: FunctionRef) -> PooledContainer | None:
        """The running namespace container the function is placed in, if any."""
        if self.sharing is None or (ref := self.sharing.shared_ref(function)) is None:
            return None
        return self.sharing.container_of(ref)

    def _loaded(self, function: FunctionRef) -> bool:
        """Whether a container of its own, or its namespace container, holds the function."""
        if any(c.function_key == function.key for c in self.pool.containers()):
            return True
        container = self._namespace_container(function)
        return (container is not None and self.sharing is not None
                and function.key in self.sharing.holds(container))

    def spare_holdings(self, now: float) -> list[FunctionRef]:
        """The functions the spare share of the pool's memory keeps loaded: those requested
        in the last hour, highest value density first (request rate ÷ memory; the start a
        loaded container saves is the same image's start for every function), while their
        memory fits in the share."""
        if not self.preloading or self.spare_share <= 0:
            return []
        budget = self.spare_share * self.pool.config.memory_mb
        densities = {stats.function.key: stats.rate_per_s(now) / max(1, stats.function.memory_mb)
                     for stats in self.tracker.stats.values()}
        ranked = sorted((stats.function for stats in self.tracker.stats.values()
                         if densities[stats.function.key] > 0),
                        key=lambda function: densities[function.key], reverse=True)
        kept = []
        for function in ranked:
            if function.memory_mb <= budget:
                kept.append(function)
                budget -= function.memory_mb
        return kept

    def _kept_containers(self, functions: set[str]) -> set[str]:
        """Ids of the containers the spare share keeps: one per function, the most recently
        used (the share holds one container's memory per function; instances a burst added
        go when their keep-alive ends)."""
        newest: dict[str, PooledContainer] = {}
        for container in self.pool.containers():
            key = container.function_key
            if key in functions and (key not in newest
                                     or container.last_used > newest[key].last_used):
                newest[key] = container
        kept = {container.info.id for container in newest.values()}
        if self.sharing is not None:  # a namespace container holding one of them stays
            kept |= {c.info.id for c in self.pool.containers()
                     if is_namespace_key(c.function_key) and self.sharing.holds(c) & functions}
        return kept

    async def _preload_spare(self, spare: list[FunctionRef]) -> None:
        # One start per period: a start takes a core for seconds, and requests come first.
        missing = next((f for f in spare if not self._loaded(f)), None)
        if missing is not None:
            await self._preload(missing)

    def _preload_due(self, stats: FunctionStats, now: float) -> bool:
        decision = self.tracker.decision(stats.function.key)
        if decision.prewarm_window_s <= 0 or stats.last_end is None:
            return False
        if self._loaded(stats.function):
            return False
        # The keep-alive runs from the load at the window's start, not from the end.
        since_end = now - stats.last_end
        return (decision.prewarm_window_s <= since_end
                < decision.prewarm_window_s + decision.keepalive_s)

    def _free_bytes(self) -> int:
        return max(0, self.pool.config.memory_mb - self.pool.used_mb()) * MB


def _profile(stats: FunctionStats, now: float, measured: Estimates,
             adapter_only: bool = False) -> FunctionProfile:
    """A function's pre-loading profile from its measured loads into host memory; an
    artifact never measured in full takes its last load time (else 0) and DEFAULT_BYTES.
    `adapter_only`: in a running namespace container, which holds the rest already."""
    artifacts = []
    for kind in ArtifactKind:
        name = kind.name.lower()
        estimate = measured.get((name, HOST))
        load_ms = estimate.load_ms if estimate else stats.load_ms.get(name, 0.0)
        size = estimate.memory_bytes if estimate else DEFAULT_BYTES[kind]
        if adapter_only and kind is not ArtifactKind.ADAPTER:
            load_ms, size = 0.0, 0
        elif adapter_only and load_ms <= 0:
            load_ms = ADAPTER_LOAD_MS  # its namespace container's load, never measured here
        artifacts.append(ArtifactProfile(load_ms={Tier.DISK: load_ms},
                                         memory_bytes={Tier.HOST: size}))
    return FunctionProfile(key=stats.function.key, rate_per_s=stats.rate_per_s(now),
                           artifacts=tuple(artifacts), backbone=stats.function.backbone,
                           accelerator=None)
