"""The maintenance's predictive cycle: unload after an execution, pre-load at the window.

A function whose idle times all fall in one histogram bin is predictable: after each
execution its container goes (the next request is not due before the pre-warm window) and
a container is pre-loaded when the window opens. The pool is a fake: this tests the
decisions, `tests/integration/test_pool.py` tests the pool on the real engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.pool import FunctionRef, PoolConfig
from lorafaas.invoker.prewarm import ColdStartWindow, PrewarmConfig, StemBackoff
from lorafaas.names import QualifiedName

IDLE_S = 20.0  # every idle time of the function: head 20 s, pre-warm window 18 s
# What a cold start measured: the load time a pre-load saves.
COLD_BREAKDOWN = {"libraries": 2600.0, "backbone": 40.0, "adapter": 20.0, "tokenizer": 10.0,
                  "kernels": 60.0}
FUNCTION = FunctionRef(key="guest/f@0.0.1:abc", name=QualifiedName.from_path("guest/f"), adapter_dir=Path("/none"),
                       memory_mb=1024)


class FakePool:
    """The parts of ContainerPool the maintenance uses, recording what it is asked."""

    def __init__(self, tmp: Path) -> None:
        self.config = PoolConfig(invoker_id="t", image="i", run_dir=tmp, pids_limit=64,
                                 start_timeout_s=1.0, max_instances=2)
        self.cold_starts = {"default": ColdStartWindow()}
        self.held: list[PooledContainer] = []
        self.preloaded: list[str] = []
        self.removed: list[tuple[str, str]] = []
        self.stem_requests: list[bool] = []  # `evict` of each stem cell asked for
        self.stems_start = False  # whether a stem cell asked for starts
        self.stem_backoff = StemBackoff()
        self._tmp = tmp

    def containers(self) -> list[PooledContainer]:
        return list(self.held)

    def used_mb(self) -> int:
        return sum(c.memory_mb for c in self.held)

    async def health_check(self) -> int:
        return 0

    async def ensure_channels(self) -> int:
        return 0

    async def add_stem_cell(self, backbone: str = "", evict: bool = False) -> bool:
        self.stem_requests.append(evict)
        return self.stems_start

    async def remove_idle(self, predicate: Callable[[PooledContainer], bool],
                          reason: str) -> int:
        chosen = [c for c in self.held if c.evictable and predicate(c)]
        self.held = [c for c in self.held if c not in chosen]
        self.removed += [(c.info.name, reason) for c in chosen]
        return len(chosen)

    async def preload(self, function: FunctionRef) -> bool:
        self.preloaded.append(function.key)
        self.held.append(self.container(function, ContainerState.PRELOADED))
        return True

    def container(self, function: FunctionRef, state: ContainerState) -> PooledContainer:
        name = f"c{len(self.held)}"
        return PooledContainer(ContainerInfo(id=name, name=name, pid=0),
                               ContainerFolders(self._tmp / name),
                               None,  # type: ignore[arg-type]  # never called here
                               function.memory_mb,
                               state, function.key, function.path)


def predictable_tracker(start: float) -> tuple[FunctionTracker, float]:
    """A tracker that has seen 12 executions of FUNCTION, each IDLE_S after the last end;
    returns it and the time the last execution ended."""
    policy = KeepAlivePolicy(KeepAliveConfig(bin_s=1.0, range_s=100.0, min_samples=10))
    tracker = FunctionTracker(policy)
    at = start
    for _ in range(12):
        tracker.arrived(FUNCTION, at)
        tracker.ended(FUNCTION, at + 0.5, COLD_BREAKDOWN)
        at += 0.5 + IDLE_S
    return tracker, at - IDLE_S


async def test_predictable_function_is_unloaded_then_preloaded_at_its_window(
        tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker, ended = predictable_tracker(time.time() - 1000)
    decision = tracker.decision(FUNCTION.key)
    assert decision.policy == "histogram" and decision.prewarm_window_s == 18.0
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                              period_s=1.0)
    pool.held.append(pool.container(FUNCTION, ContainerState.IDLE))

    await maintenance.tick(ended + 1.0)  # before the window: the container goes
    assert pool.removed == [("c0", "keep-alive ended")] and not pool.preloaded

    await maintenance.tick(ended + 10.0)  # still before the window: nothing is loaded
    assert not pool.preloaded

    await maintenance.tick(ended + 18.5)  # the window is open: pre-loaded, once
    await maintenance.tick(ended + 19.0)
    assert pool.preloaded == [FUNCTION.key]
    assert [c.state for c in pool.held] == [ContainerState.PRELOADED]


async def test_preloading_off_never_loads_ahead(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker, ended = predictable_tracker(time.time() - 1000)
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                              period_s=1.0, preloading=False)
    await maintenance.tick(ended + 18.5)
    assert not pool.preloaded


async def test_unpredictable_function_keeps_its_container(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig(fixed_keepalive_s=60.0)))
    now = time.time()
    tracker.arrived(FUNCTION, now - 2.0)
    tracker.ended(FUNCTION, now - 1.0, {})
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                              period_s=1.0)
    pool.held.append(pool.container(FUNCTION, ContainerState.IDLE))
    await maintenance.tick(now)
    assert not pool.removed and not pool.preloaded


def spare_function(name: str, memory_mb: int = 1024) -> FunctionRef:
    """A function of its own adapter (any folder: the fake pool loads nothing)."""
    return FunctionRef(key=f"guest/{name}@0.0.1:abc", name=QualifiedName.from_path(f"guest/{name}"),
                       adapter_dir=Path("/none"), memory_mb=memory_mb)


def spare_tracker(arrivals: dict[FunctionRef, int], now: float) -> FunctionTracker:
    """A tracker that saw each function's arrivals in the last minutes, each one ended;
    keep-alive 0: every idle container has outlived it."""
    tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig(policy="fixed",
                                                              fixed_keepalive_s=0.0)))
    for function, count in arrivals.items():
        for i in range(count):
            tracker.arrived(function, now - 300 + i)
            tracker.ended(function, now - 299 + i, {})
    return tracker


async def test_spare_memory_preloads_the_densest_functions_one_per_tick(
        tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    pool.config = replace(pool.config, memory_mb=4096)  # a share of 0.5: 2048 MB
    busy, small, rare = spare_function("busy"), spare_function("small", 512), spare_function("rare")
    now = time.time()
    # Densities (arrivals ÷ MB): small 4/512 > busy 6/1024 > rare 1/1024.
    tracker = spare_tracker({busy: 6, small: 4, rare: 1}, now)
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                              period_s=1.0, spare_share=0.5)
    assert [f.key for f in maintenance.spare_holdings(now)] == [small.key, busy.key]

    await maintenance.tick(now)
    assert pool.preloaded == [small.key]
    for _ in range(3):  # the rest of the share, then nothing more: `rare` does not fit
        await maintenance.tick(now)
    assert pool.preloaded == [small.key, busy.key]


async def test_spare_memory_keeps_containers_past_their_keep_alive(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    pool.config = replace(pool.config, memory_mb=2048)  # a share of 0.5: one function
    busy, rare = spare_function("busy"), spare_function("rare")
    now = time.time()
    tracker = spare_tracker({busy: 5, rare: 1}, now)
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                              period_s=1.0, spare_share=0.5)
    pool.held += [pool.container(busy, ContainerState.IDLE)]
    pool.held += [pool.container(rare, ContainerState.IDLE)]

    await maintenance.tick(now + 1.0)
    assert pool.removed == [("c1", "keep-alive ended")]  # rare's: outside the share
    assert [c.function_key for c in pool.held] == [busy.key] and not pool.preloaded


async def test_no_spare_share_keeps_nothing_past_the_keep_alive(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    busy = spare_function("busy")
    now = time.time()
    maintenance = Maintenance(pool, spare_tracker({busy: 5}, now),  # type: ignore[arg-type]
                              PrewarmConfig(min_count=0, max_count=0), period_s=1.0)
    pool.held.append(pool.container(busy, ContainerState.IDLE))
    await maintenance.tick(now + 1.0)
    assert pool.removed == [("c0", "keep-alive ended")] and not pool.preloaded


async def test_spare_memory_keeps_one_container_per_function(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    busy = spare_function("busy")
    now = time.time()
    maintenance = Maintenance(pool, spare_tracker({busy: 5}, now),  # type: ignore[arg-type]
                              PrewarmConfig(min_count=0, max_count=0), period_s=1.0,
                              spare_share=0.5)
    older, newer = (pool.container(busy, ContainerState.IDLE) for _ in range(2))
    newer.info = ContainerInfo(id="c1", name="c1", pid=0)
    older.last_used, newer.last_used = time.monotonic() - 5.0, time.monotonic() - 1.0
    pool.held += [older, newer]

    await maintenance.tick(now + 1.0)  # the burst's second instance goes, the newest stays
    assert pool.removed == [("c0", "keep-alive ended")]
    assert pool.held == [newer] and not pool.preloaded


async def test_a_forgotten_action_is_neither_kept_nor_preloaded(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    busy, gone = spare_function("busy"), spare_function("gone")
    now = time.time()
    tracker = spare_tracker({busy: 2, gone: 5}, now)
    maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                              period_s=1.0, spare_share=0.5)
    tracker.forget(gone.path)  # deleted, or updated to a new version
    assert [f.key for f in maintenance.spare_holdings(now)] == [busy.key]
    await maintenance.tick(now)
    assert pool.preloaded == [busy.key]


async def test_only_the_stem_cell_minimum_may_evict(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    pool.stems_start = True
    tracker, _ = predictable_tracker(time.time() - 1000)
    # Two cold starts in the last minute: one stem cell more than the minimum is wanted.
    for _ in range(2):
        pool.cold_starts["default"].record(time.time())
    prewarm = PrewarmConfig(min_count=1, max_count=2, threshold=2, increment=1)
    await Maintenance(pool, tracker, prewarm, period_s=1.0).tick(time.time())  # type: ignore[arg-type]
    assert pool.stem_requests == [True, False]
