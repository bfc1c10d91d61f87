"""The maintenance with namespace containers: a function placed in its namespace's
container is pre-loaded there (its adapter, within the container's free adapter budget),
counts as loaded while its adapter is held there, and the container is kept alive as long
as the longest keep-alive of the functions whose adapters it holds.

The pool and the sharing are fakes: this tests the decisions;
`tests/integration/test_shared_containers.py` tests them on the real platform.
"""

from __future__ import annotations

import time
from pathlib import Path

from lorafaas.invoker.containers import ContainerState, PooledContainer
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.pool import FunctionRef
from lorafaas.invoker.prewarm import PrewarmConfig
from lorafaas.invoker.sharing import namespace_key
from lorafaas.names import QualifiedName
from tests.unit.test_maintenance_preload import FUNCTION, FakePool, predictable_tracker

NAMESPACE_REF = FunctionRef(key=namespace_key("guest", "default"),
                            name=QualifiedName("guest", None, "(namespace container)"),
                            adapter_dir=Path("/none"), memory_mb=2048)
MB = 1024 * 1024


class FakeSharing:
    """The parts of NamespaceSharing the maintenance uses: every function it was told of is
    placed in guest's namespace container, whose adapters it records."""

    def __init__(self, pool: FakePool, shared: set[str], free_bytes: int = 64 * MB) -> None:
        self.pool = pool
        self.shared = shared
        self.free_bytes = free_bytes
        self.held: dict[str, set[str]] = {}  # container id -> function keys
        self.preloaded: list[str] = []

    async def refresh_steps(self) -> None:
        pass

    def shared_ref(self, function: FunctionRef) -> FunctionRef | None:
        return NAMESPACE_REF if function.key in self.shared else None

    def container_of(self, ref: FunctionRef) -> PooledContainer | None:
        return next((c for c in self.pool.held if c.function_key == ref.key), None)

    def holds(self, container: PooledContainer) -> set[str]:
        return self.held.get(container.info.id, set())

    def free_adapter_bytes(self, container: PooledContainer) -> int:
        return self.free_bytes

    async def preload(self, function: FunctionRef) -> bool:
        container = self.container_of(NAMESPACE_REF)
        if container is None:
            container = self.pool.container(NAMESPACE_REF, ContainerState.PRELOADED)
            self.pool.held.append(container)
        self.held.setdefault(container.info.id, set()).add(function.key)
        self.preloaded.append(function.key)
        return True


def maintenance(pool: FakePool, tracker: FunctionTracker, sharing: FakeSharing,
                spare_share: float = 0.0) -> Maintenance:
    """The maintenance on the fakes, with no stem cells."""
    return Maintenance(pool, tracker, PrewarmConfig(min_count=0, max_count=0),  # type: ignore[arg-type]
                       period_s=1.0, spare_share=spare_share, sharing=sharing)  # type: ignore[arg-type]


async def test_a_shared_function_is_preloaded_into_its_namespace_container_once(
        tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker, ended = predictable_tracker(time.time() - 1000)
    sharing = FakeSharing(pool, {FUNCTION.key})
    work = maintenance(pool, tracker, sharing)
    await work.tick(ended + 10.0)  # before its window: nothing is loaded
    assert not sharing.preloaded
    await work.tick(ended + 18.5)  # the window is open: its adapter, in the shared container
    await work.tick(ended + 19.0)  # held there: not loaded again
    assert sharing.preloaded == [FUNCTION.key] and not pool.preloaded
    assert [c.function_key for c in pool.held] == [NAMESPACE_REF.key]


async def test_its_adapter_is_preloaded_only_within_the_container_s_adapter_budget(
        tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker, ended = predictable_tracker(time.time() - 1000)
    sharing = FakeSharing(pool, {FUNCTION.key}, free_bytes=MB)  # its adapter takes 8 MB
    pool.held.append(pool.container(NAMESPACE_REF, ContainerState.IDLE))
    work = maintenance(pool, tracker, sharing)
    await work.tick(ended + 18.5)
    assert not sharing.preloaded and not pool.preloaded
    sharing.free_bytes = 64 * MB
    await work.tick(ended + 19.0)
    assert sharing.preloaded == [FUNCTION.key]


async def test_an_unshared_function_still_gets_a_container_of_its_own(tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker, ended = predictable_tracker(time.time() - 1000)
    sharing = FakeSharing(pool, set())
    await maintenance(pool, tracker, sharing).tick(ended + 18.5)
    assert pool.preloaded == [FUNCTION.key] and not sharing.preloaded


async def test_the_namespace_container_lives_as_long_as_its_functions_keep_alive(
        tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    tracker, ended = predictable_tracker(time.time() - 1000)
    held_for = tracker.decision(FUNCTION.key).keepalive_s
    unknown = tracker.decision(NAMESPACE_REF.key).keepalive_s  # the policy's default
    assert held_for + 5 < unknown
    sharing = FakeSharing(pool, {FUNCTION.key})
    holding, empty = (pool.container(NAMESPACE_REF, ContainerState.IDLE) for _ in range(2))
    empty.info = type(empty.info)(id="c1", name="c1", pid=0)
    holding.last_used = empty.last_used = time.monotonic() - (held_for + 5)
    pool.held += [holding, empty]
    sharing.held[holding.info.id] = {FUNCTION.key}
    await maintenance(pool, tracker, sharing).tick(ended + 1000.0)
    # The one holding FUNCTION's adapter outlived FUNCTION's keep-alive; the empty one
    # keeps the default.
    assert pool.removed == [("c0", "keep-alive ended")] and pool.held == [empty]


async def test_the_spare_share_keeps_the_namespace_container_of_its_functions(
        tmp_path: Path) -> None:
    pool = FakePool(tmp_path)
    now = time.time()
    tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig(policy="fixed",
                                                              fixed_keepalive_s=0.0)))
    for i in range(5):
        tracker.arrived(FUNCTION, now - 300 + i)
        tracker.ended(FUNCTION, now - 299 + i, {})
    sharing = FakeSharing(pool, {FUNCTION.key})
    work = maintenance(pool, tracker, sharing, spare_share=0.5)
    await work.tick(now)  # not loaded anywhere: pre-loaded into its namespace container
    assert sharing.preloaded == [FUNCTION.key] and not pool.preloaded
    await work.tick(now + 1.0)  # kept past the keep-alive of 0, and not loaded again
    assert not pool.removed and sharing.preloaded == [FUNCTION.key]
