"""Offloading: keep the artifacts of running functions within the accelerator-memory budget.

Each function container holds its own artifacts (adapter weights, cached buffers) in
accelerator memory; the shared backbone is not counted. `AcceleratorMemory` is the ledger
of those bytes against a budget (`LORAFAAS_ACCELERATOR_MEMORY_MB`, 0: unlimited). Before a
container runs a request, its artifacts must be in accelerator memory: if they were
offloaded, the bytes they need are freed first by moving artifacts of idle containers to
host memory, chosen by the policy, without stopping those containers:

- `value-density`: lowest predicted rate × reload time saved ÷ bytes first (the pre-loading
  planner's value density, with the restore from host as the load time saved);
- `lru`: least recently used first;
- `none`: nothing moves; the request waits until a container is removed.

When the idle candidates cannot free enough (busy containers are never chosen), the request
waits until a container is released or removed and tries again. A container found holding
artifacts beyond the budget (a fresh start or a pre-load loads them at /init) is moved to
host memory at once, as if it had been loaded there, so the ledger never exceeds the budget.
Every move is logged and counted (`OffloadCounters`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from lorafaas.invoker.containers import ContainerState, PooledContainer
from lorafaas.invoker.preloading import Tier
from lorafaas.invoker.runtime_client import RuntimeUnavailable

logger = logging.getLogger(__name__)
MB = 1024 * 1024
# Restore time per byte before any restore was measured: about 10 GB/s.
DEFAULT_RESTORE_MS_PER_BYTE = 0.1 / MB


class OffloadPolicy(enum.Enum):
    """Which idle containers' artifacts move to host memory first."""

    VALUE_DENSITY = "value-density"
    LRU = "lru"
    NONE = "none"


class OffloadError(RuntimeError):
    """A container's artifacts can never fit the accelerator-memory budget."""


class AcceleratorMemory:
    """Bytes each container holds in accelerator memory, against a budget (0: unlimited)."""

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"the accelerator-memory budget must be >= 0, not {budget_bytes}")
        self.budget_bytes = budget_bytes
        self._held: dict[str, int] = {}

    def used(self) -> int:
        """Bytes held by every container."""
        return sum(self._held.values())

    def held(self, container_id: str) -> int:
        """Bytes one container holds."""
        return self._held.get(container_id, 0)

    def shortfall(self, extra_bytes: int) -> int:
        """Bytes to free before `extra_bytes` more fit (0: they fit)."""
        if self.budget_bytes == 0:
            return 0
        return max(0, self.used() + extra_bytes - self.budget_bytes)

    def hold(self, container_id: str, nbytes: int) -> None:
        """The container holds `nbytes` in accelerator memory."""
        self._held[container_id] = nbytes

    def drop(self, container_id: str) -> int:
        """The container holds nothing any more; return what it held."""
        return self._held.pop(container_id, 0)


@dataclass(frozen=True)
class Candidate:
    """A container whose artifacts are in accelerator memory, as an offloading candidate."""

    container_id: str
    nbytes: int
    last_used: float  # monotonic seconds
    rate_per_s: float  # predicted requests per second of its function
    reload_ms: float  # time to bring the artifacts back from host memory
    idle: bool  # busy containers are never chosen

    @property
    def value_density(self) -> float:
        """Reload milliseconds saved per second, per byte held."""
        return self.rate_per_s * self.reload_ms / max(1, self.nbytes)


@dataclass(frozen=True)
class OffloadChoice:
    """The victims, or (missing_bytes > 0) why there are none: the candidates fall short."""

    victims: tuple[Candidate, ...]
    missing_bytes: int

    @property
    def enough(self) -> bool:
        """Whether offloading the victims frees the bytes asked for."""
        return self.missing_bytes == 0


def choose_offloads(needed_bytes: int, candidates: Sequence[Candidate],
                    policy: OffloadPolicy) -> OffloadChoice:
    """Idle candidates to offload, in the policy's order, until `needed_bytes` are freed.

    Nothing is chosen when they cannot free enough: a partial offload would not let the
    request run, and would only cost moves.
    """
    if needed_bytes <= 0:
        return OffloadChoice((), 0)
    if policy is OffloadPolicy.NONE:
        return OffloadChoice((), needed_bytes)
    eligible = [c for c in candidates if c.idle and c.nbytes > 0]
    if policy is OffloadPolicy.LRU:
        eligible.sort(key=lambda c: c.last_used)
    else:  # the least valuable first; among equals, the least recently used
        eligible.sort(key=lambda c: (c.value_density, c.last_used))
    victims, freed = [], 0
    for candidate in eligible:
        if freed >= needed_bytes:
            break
        victims.append(candidate)
        freed += candidate.nbytes
    if freed < needed_bytes:
        return OffloadChoice((), needed_bytes - freed)
    return OffloadChoice(tuple(victims), 0)


@dataclass
class OffloadCounters:
    """Moves so far, for the metrics: counts, bytes, milliseconds, and waits for memory."""

    offloads: int = 0
    restores: int = 0
    bytes_offloaded: int = 0
    bytes_restored: int = 0
    offload_ms: float = 0.0
    restore_ms: float = 0.0
    waits: int = 0  # requests that waited for memory
    wait_ms: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The counters by name."""
        return {name: float(value) for name, value in asdict(self).items()}


@dataclass
class _Artifacts:
    """What the offloader knows of one container's artifacts."""

    nbytes: int
    tier: Tier
    reload_ms: float | None = None  # its last measured restore


RateOf = Callable[[str], float]  # function key -> predicted requests per second


def _no_rate(function_key: str) -> float:
    return 0.0


class Offloader:
    """Moves containers' artifacts between accelerator and host memory for the pool."""

    def __init__(self, policy: OffloadPolicy, memory: AcceleratorMemory,
                 rate_of: RateOf = _no_rate) -> None:
        self.policy = policy
        self.memory = memory
        self.rate_of = rate_of
        self.counters = OffloadCounters()
        self._known: dict[str, _Artifacts] = {}
        self._moving: set[str] = set()  # containers whose move is under way
        # Notified when a container is released or removed: memory may be had again.
        self._changed = asyncio.Condition()

    def tier_of(self, container: PooledContainer) -> Tier | None:
        """Where the container's artifacts are, if known."""
        known = self._known.get(container.info.id)
        return known.tier if known is not None else None

    async def before_run(self, container: PooledContainer,
                         pool: Callable[[], list[PooledContainer]],
                         on_wait: Callable[[], None] = lambda: None) -> None:
        """Bring the container's artifacts into accelerator memory, offloading others' or
        waiting for memory first (see the module doc); `pool` lists the pooled containers,
        `on_wait` is called before waiting for memory."""
        known = self._known.get(container.info.id)
        if known is not None and known.tier is Tier.ACCELERATOR \
                and container.info.id not in self._moving:
            return
        async with self._changed:
            waited_from: float | None = None
            while True:
                everyone = pool()
                await self._discover(container, everyone)
                shortfall = self._shortfall(container)
                if shortfall <= 0:
                    break
                self._check_fits(container)
                choice = choose_offloads(shortfall, self._candidates(everyone, container),
                                         self.policy)
                if choice.enough:
                    by_id = {c.info.id: c for c in everyone}
                    for victim in choice.victims:
                        await self._offload(by_id[victim.container_id])
                    continue
                if self.tier_of(container) is Tier.ACCELERATOR:
                    # Hold no memory while waiting: two waiters must not block each other.
                    await self._offload(container, required=True)
                    continue
                if waited_from is None:
                    waited_from = time.monotonic()
                    self.counters.waits += 1
                    on_wait()
                await self._changed.wait()
            if waited_from is not None:
                self.counters.wait_ms += (time.monotonic() - waited_from) * 1000
            await self._restore(container)

    async def released(self, container: PooledContainer) -> None:
        """The container is idle again: its artifacts may now be offloaded for others."""
        async with self._changed:
            self._changed.notify_all()

    async def removed(self, container: PooledContainer) -> None:
        """The container is gone, and its accelerator memory with it."""
        async with self._changed:
            self._forget(container.info.id)
            self._changed.notify_all()

    # --- the ledger and the moves ---------------------------------------------------------

    def _shortfall(self, container: PooledContainer) -> int:
        known = self._known[container.info.id]
        return self.memory.shortfall(known.nbytes if known.tier is Tier.HOST else 0)

    def _check_fits(self, container: PooledContainer) -> None:
        nbytes = self._known[container.info.id].nbytes
        if nbytes > self.memory.budget_bytes:
            raise OffloadError(f"container {container.info.name} needs {nbytes} bytes of "
                               f"accelerator memory, more than the whole budget of "
                               f"{self.memory.budget_bytes}")

    async def _discover(self, running: PooledContainer,
                        everyone: Iterable[PooledContainer]) -> None:
        """Learn the artifacts of containers not seen yet (a fresh start, a pre-load)."""
        # The running container last: the idle ones held their memory before it came.
        for container in [*(c for c in everyone if c is not running), running]:
            if container.info.id in self._known or container.function_key is None \
                    or container.state is ContainerState.STARTING:
                continue
            try:
                health = await container.client.health()
            except RuntimeUnavailable:
                if container is running:
                    raise
                continue  # going away; the health check removes it
            nbytes = int(health.get("artifactBytes", 0))
            self._known[container.info.id] = _Artifacts(nbytes, Tier.ACCELERATOR)
            self.memory.hold(container.info.id, nbytes)
            if health.get("tier") == Tier.HOST.value:
                self._record_host(container.info.id)
            elif container is not running and self.memory.shortfall(0) > 0:
                # Loaded at /init beyond the budget: as if it had been loaded to host memory.
                await self._offload(container)

    def _candidates(self, everyone: Iterable[PooledContainer],
                    running: PooledContainer) -> list[Candidate]:
        candidates = []
        for other in everyone:
            known = self._known.get(other.info.id)
            if other is running or known is None or known.tier is not Tier.ACCELERATOR \
                    or other.info.id in self._moving:
                continue
            reload_ms = known.reload_ms if known.reload_ms is not None \
                else known.nbytes * self._restore_ms_per_byte()
            candidates.append(Candidate(other.info.id, known.nbytes, other.last_used,
                                        self.rate_of(other.function_key or ""), reload_ms,
                                        other.evictable))
        return candidates

    def _restore_ms_per_byte(self) -> float:
        if self.counters.bytes_restored == 0:
            return DEFAULT_RESTORE_MS_PER_BYTE
        return self.counters.restore_ms / self.counters.bytes_restored

    def _record_host(self, container_id: str) -> None:
        self._known[container_id].tier = Tier.HOST
        self.memory.drop(container_id)

    def _forget(self, container_id: str) -> None:
        self._known.pop(container_id, None)
        self.memory.drop(container_id)

    async def _offload(self, container: PooledContainer, required: bool = False) -> None:
        self._moving.add(container.info.id)
        try:
            move = await container.client.move(to_host=True)
        except RuntimeUnavailable:
            if required:
                raise
            # It died or is being removed: its memory is free either way.
            logger.warning("offloading container %s failed; counting its memory free",
                           container.info.name)
            self._forget(container.info.id)
            return
        finally:
            self._moving.discard(container.info.id)
        self._record_host(container.info.id)
        self.counters.offloads += 1
        self.counters.bytes_offloaded += move.bytes
        self.counters.offload_ms += move.ms
        logger.info("offloaded container %s (%s) to host memory: %d bytes in %.1f ms",
                    container.info.name, container.function_path, move.bytes, move.ms)

    async def _restore(self, container: PooledContainer) -> None:
        known = self._known[container.info.id]
        if known.tier is Tier.ACCELERATOR:
            return
        self._moving.add(container.info.id)
        try:
            move = await container.client.move(to_host=False)
        finally:
            self._moving.discard(container.info.id)
        known.tier = Tier.ACCELERATOR
        self.memory.hold(container.info.id, known.nbytes)
        if move.bytes:
            known.reload_ms = move.ms
        self.counters.restores += 1
        self.counters.bytes_restored += move.bytes
        self.counters.restore_ms += move.ms
        logger.info("restored container %s (%s) to accelerator memory: %d bytes in %.1f ms",
                    container.info.name, container.function_path, move.bytes, move.ms)
