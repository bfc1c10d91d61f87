"""Offloading: the choice of victims on constructed cases, and the offloader's moves against
fake runtimes (the real ones are in tests/integration/test_offloading.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.offloading import (
    MB,
    AcceleratorMemory,
    Candidate,
    Offloader,
    OffloadError,
    OffloadPolicy,
    choose_offloads,
)
from lorafaas.invoker.preloading import Tier
from lorafaas.invoker.runtime_client import TierMove

VALUE_DENSITY, LRU, NONE = OffloadPolicy.VALUE_DENSITY, OffloadPolicy.LRU, OffloadPolicy.NONE


def candidate(name: str, mb: int = 1, last_used: float = 0.0, rate: float = 1.0,
              reload_ms: float = 1.0, idle: bool = True) -> Candidate:
    """A container holding `mb` in accelerator memory."""
    return Candidate(name, mb * MB, last_used, rate, reload_ms, idle)


def chosen(needed_mb: int, candidates: list[Candidate], policy: OffloadPolicy) -> list[str]:
    """The ids of the victims."""
    return [c.container_id for c in choose_offloads(needed_mb * MB, candidates,
                                                    policy).victims]


# --- the choice ------------------------------------------------------------------------


def test_lru_and_value_density_differ_when_the_oldest_is_the_busiest() -> None:
    # `popular` was used long ago but is asked for often; `rare` was used just now, once.
    popular = candidate("popular", last_used=10.0, rate=5.0)
    rare = candidate("rare", last_used=99.0, rate=0.01)
    assert chosen(1, [popular, rare], LRU) == ["popular"]
    assert chosen(1, [popular, rare], VALUE_DENSITY) == ["rare"]


def test_value_density_weighs_reload_time_and_bytes() -> None:
    # Same rate: the big adapter frees more per millisecond of reload it will cost.
    big = candidate("big", mb=8, reload_ms=8.0)
    small = candidate("small", mb=1, reload_ms=4.0)
    assert big.value_density < small.value_density
    assert chosen(1, [small, big], VALUE_DENSITY) == ["big"]
    # A slow reload (measured) makes an artifact worth keeping.
    slow = candidate("slow", mb=8, reload_ms=200.0)
    assert chosen(1, [small, slow], VALUE_DENSITY) == ["small"]


def test_victims_are_taken_until_enough_is_freed() -> None:
    cands = [candidate(n, mb=2, last_used=t) for n, t in (("a", 3.0), ("b", 1.0), ("c", 2.0))]
    assert chosen(3, cands, LRU) == ["b", "c"]
    assert chosen(2, cands, LRU) == ["b"]
    choice = choose_offloads(0, cands, LRU)
    assert choice.victims == () and choice.enough


def test_equal_density_falls_back_to_least_recently_used() -> None:
    cands = [candidate("new", last_used=5.0, rate=0.0), candidate("old", last_used=1.0,
                                                                  rate=0.0)]
    assert chosen(1, cands, VALUE_DENSITY) == ["old"]


def test_an_insufficient_candidate_set_is_reported_and_nothing_is_chosen() -> None:
    cands = [candidate("a", mb=1), candidate("b", mb=1)]
    for policy in (LRU, VALUE_DENSITY):
        choice = choose_offloads(3 * MB, cands, policy)
        assert choice.victims == () and not choice.enough
        assert choice.missing_bytes == 1 * MB


def test_busy_containers_are_never_chosen() -> None:
    busy = candidate("busy", mb=4, last_used=0.0, rate=0.0, idle=False)
    idle = candidate("idle", mb=1, last_used=9.0, rate=9.0)
    for policy in (LRU, VALUE_DENSITY):
        assert chosen(1, [busy, idle], policy) == ["idle"]
        choice = choose_offloads(2 * MB, [busy, idle], policy)
        assert choice.victims == () and choice.missing_bytes == 1 * MB


def test_policy_none_never_offloads() -> None:
    choice = choose_offloads(1 * MB, [candidate("a", mb=4)], NONE)
    assert choice.victims == () and choice.missing_bytes == 1 * MB


def test_the_ledger_counts_against_its_budget() -> None:
    memory = AcceleratorMemory(4 * MB)
    memory.hold("a", 3 * MB)
    assert memory.shortfall(1 * MB) == 0 and memory.shortfall(2 * MB) == 1 * MB
    assert memory.drop("a") == 3 * MB and memory.used() == 0
    unlimited = AcceleratorMemory(0)
    unlimited.hold("a", 10**12)
    assert unlimited.shortfall(10**12) == 0
    with pytest.raises(ValueError, match="budget"):
        AcceleratorMemory(-1)


# --- the offloader against fake runtimes -----------------------------------------------


class FakeRuntime:
    """A runtime's /health, /offload and /restore over an adapter of `nbytes`."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.tier = "accelerator"
        self.moves: list[str] = []

    async def health(self) -> dict[str, object]:
        return {"ok": True, "initialized": True, "tier": self.tier,
                "artifactBytes": self.nbytes,
                "acceleratorBytes": self.nbytes if self.tier == "accelerator" else 0}

    async def move(self, to_host: bool) -> TierMove:
        target = "host" if to_host else "accelerator"
        moved = 0 if target == self.tier else self.nbytes
        self.tier = target
        self.moves.append(target)
        return TierMove(target, moved, 2.0)


class FakePool:
    """Containers as the pool holds them."""

    def __init__(self) -> None:
        self.held: list[PooledContainer] = []

    def add(self, name: str, mb: int, state: ContainerState = ContainerState.IDLE,
            last_used: float = 0.0) -> PooledContainer:
        container = PooledContainer(ContainerInfo(name, name, 0), ContainerFolders(Path("/x")),
                                    FakeRuntime(mb * MB), mb, state,  # type: ignore[arg-type]
                                    f"guest/{name}@1:x", f"guest/{name}", last_used=last_used)
        self.held.append(container)
        return container

    def __call__(self) -> list[PooledContainer]:
        return list(self.held)


def runtime(container: PooledContainer) -> FakeRuntime:
    """The fake behind a container."""
    assert isinstance(container.client, FakeRuntime)
    return container.client


async def test_a_new_container_offloads_the_least_valuable_idle_one() -> None:
    pool = FakePool()
    hot = pool.add("hot", 2, last_used=1.0)
    cold = pool.add("cold", 2, last_used=2.0)
    rates = {hot.function_key: 5.0, cold.function_key: 0.1}
    offloader = Offloader(VALUE_DENSITY, AcceleratorMemory(5 * MB),
                          lambda key: rates.get(key, 0.0))
    new = pool.add("new", 2, ContainerState.BUSY)
    await offloader.before_run(new, pool)
    assert runtime(cold).moves == ["host"] and runtime(hot).moves == []
    assert offloader.tier_of(new) is Tier.ACCELERATOR and offloader.memory.used() == 4 * MB
    assert offloader.counters.offloads == 1 and offloader.counters.bytes_offloaded == 2 * MB
    assert offloader.counters.offload_ms == 2.0


async def test_lru_offloads_the_oldest_and_it_comes_back_on_its_next_request() -> None:
    pool = FakePool()
    old = pool.add("old", 2, last_used=1.0)
    pool.add("recent", 2, last_used=2.0)
    offloader = Offloader(LRU, AcceleratorMemory(4 * MB))
    new = pool.add("new", 2, ContainerState.BUSY, last_used=3.0)
    await offloader.before_run(new, pool)
    assert runtime(old).moves == ["host"] and offloader.tier_of(old) is Tier.HOST

    new.state, new.last_used = ContainerState.IDLE, 4.0
    await offloader.released(new)
    old.state = ContainerState.BUSY
    await offloader.before_run(old, pool)
    # `recent` is now the least recently used idle container.
    assert runtime(old).moves == ["host", "accelerator"]
    assert runtime(pool.held[1]).moves == ["host"]
    assert offloader.counters.restores == 1 and offloader.counters.bytes_restored == 2 * MB
    assert offloader.memory.used() == 4 * MB
    # Resident: the next request moves nothing.
    await offloader.before_run(old, pool)
    assert offloader.counters.restores == 1


async def test_with_policy_none_a_request_waits_until_a_container_is_removed() -> None:
    pool = FakePool()
    idle = pool.add("idle", 2)
    offloader = Offloader(NONE, AcceleratorMemory(2 * MB))
    await offloader.before_run(idle, pool)  # discovered: holds the whole budget
    new = pool.add("new", 2, ContainerState.BUSY)
    waiting = asyncio.create_task(offloader.before_run(new, pool))
    await asyncio.sleep(0.05)
    assert not waiting.done() and runtime(idle).moves == []
    # While it waits, the new container holds no accelerator memory.
    assert runtime(new).moves == ["host"] and offloader.memory.used() == 2 * MB
    pool.held.remove(idle)
    await offloader.removed(idle)
    await asyncio.wait_for(waiting, 1)
    assert runtime(new).tier == "accelerator" and offloader.memory.used() == 2 * MB
    assert offloader.counters.waits == 1 and offloader.counters.wait_ms > 0


async def test_two_new_containers_beyond_the_budget_do_not_block_each_other() -> None:
    pool = FakePool()
    first = pool.add("first", 2, ContainerState.BUSY)
    second = pool.add("second", 2, ContainerState.BUSY)
    offloader = Offloader(LRU, AcceleratorMemory(2 * MB))
    runs = {c.info.id: asyncio.create_task(offloader.before_run(c, pool))
            for c in (first, second)}
    await asyncio.sleep(0.05)
    done = [c for c in (first, second) if runs[c.info.id].done()]
    assert len(done) == 1, "one runs, the other waits holding no accelerator memory"
    (ran,) = done
    (waiter,) = [c for c in (first, second) if c is not ran]
    assert runtime(waiter).tier == "host" and offloader.memory.used() == 2 * MB
    ran.state = ContainerState.IDLE  # its request ended
    await offloader.released(ran)
    await asyncio.wait_for(runs[waiter.info.id], 1)
    assert runtime(ran).tier == "host" and runtime(waiter).tier == "accelerator"


async def test_busy_containers_keep_their_artifacts_and_the_request_waits() -> None:
    pool = FakePool()
    busy = pool.add("busy", 2, ContainerState.BUSY)
    offloader = Offloader(VALUE_DENSITY, AcceleratorMemory(2 * MB))
    await offloader.before_run(busy, pool)
    new = pool.add("new", 2, ContainerState.BUSY)
    waiting = asyncio.create_task(offloader.before_run(new, pool))
    await asyncio.sleep(0.05)
    assert not waiting.done() and runtime(busy).moves == []
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_an_adapter_larger_than_the_whole_budget_is_refused() -> None:
    pool = FakePool()
    offloader = Offloader(LRU, AcceleratorMemory(1 * MB))
    huge = pool.add("huge", 2, ContainerState.BUSY)
    with pytest.raises(OffloadError, match="more than the whole budget"):
        await offloader.before_run(huge, pool)


async def test_removed_containers_free_their_memory() -> None:
    pool = FakePool()
    container = pool.add("a", 2, ContainerState.BUSY)
    offloader = Offloader(LRU, AcceleratorMemory(8 * MB))
    await offloader.before_run(container, pool)
    assert offloader.memory.used() == 2 * MB
    await offloader.removed(container)
    assert offloader.memory.used() == 0 and offloader.tier_of(container) is None
