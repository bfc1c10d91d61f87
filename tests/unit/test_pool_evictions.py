"""The pool's ring of recent evictions: what went, when, why; bounded; shutdown not counted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lorafaas.invoker.backend import ContainerInfo, ContainerSpec
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.evictions import EvictionLog
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, FunctionRef, PoolConfig
from lorafaas.invoker.runtime_client import RuntimeClient
from lorafaas.names import QualifiedName

MOUNTS = BackboneMounts(Path("/run/bb/attach.sock"), Path("/dev/shm/lorafaas/demo"))


class RecordingBackend:
    """Removes by recording; a start fails (no engine here), after the eviction it follows."""

    def __init__(self) -> None:
        self.removed: list[str] = []

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        raise RuntimeError("no container engine in unit tests")

    def remove(self, container_id: str) -> None:
        self.removed.append(container_id)

    def list_labelled(self, invoker_id: str) -> list[str]:
        return []


def make_pool(tmp_path: Path, memory_mb: int = 4096) -> tuple[ContainerPool, RecordingBackend]:
    backend = RecordingBackend()
    config = PoolConfig(invoker_id="unit", image="img", run_dir=tmp_path, pids_limit=8,
                        start_timeout_s=1, max_instances=2, memory_mb=memory_mb,
                        # No backbone server here to open attach channels on.
                        stem_memory_mb=2048, backbone_sharing=False)
    return ContainerPool(backend, config, MOUNTS), backend  # type: ignore[arg-type]


def hold(pool: ContainerPool, tmp_path: Path, name: str, state: ContainerState,
         function: str | None, idle_s: float = 0.0) -> PooledContainer:
    container = PooledContainer(ContainerInfo(name, f"lorafaas-{name}", 0),
                                ContainerFolders(tmp_path / name),
                                RuntimeClient(tmp_path / name / "none.sock"), 2048, state,
                                function_key=f"{function}@0.0.1:x" if function else None,
                                function_path=function, backbone="default",
                                last_used=time.monotonic() - idle_s)
    pool._containers[container.info.id] = container
    return container


async def test_a_cold_start_records_the_preloaded_container_it_evicted(tmp_path: Path) -> None:
    pool, backend = make_pool(tmp_path)
    hold(pool, tmp_path, "pre", ContainerState.PRELOADED, "guest/old", idle_s=30)
    hold(pool, tmp_path, "warm", ContainerState.IDLE, "guest/used", idle_s=5)
    before = time.time()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    function = FunctionRef("guest/new@0.0.1:y", QualifiedName.from_path("guest/new"), adapter, 2048)
    with pytest.raises(RuntimeError, match="no container engine"):
        await pool.acquire(function)
    await pool.shutdown()  # the warm one, which is no eviction
    assert backend.removed == ["pre", "warm"]  # pre-loaded first; the warm one at shutdown
    [eviction] = pool.evictions.recent()
    assert (eviction.container, eviction.function, eviction.state, eviction.reason) == (
        "lorafaas-pre", "guest/old", "preloaded", "evicted for a cold start")
    assert eviction.memory_mb == 2048 and eviction.idle_s >= 30
    assert before <= eviction.at <= time.time()


async def test_the_stem_cell_minimum_and_keep_alive_are_recorded_newest_first(
        tmp_path: Path) -> None:
    pool, _ = make_pool(tmp_path)
    hold(pool, tmp_path, "a", ContainerState.IDLE, "guest/a")
    hold(pool, tmp_path, "b", ContainerState.PRELOADED, "guest/b")
    with pytest.raises(RuntimeError):
        await pool.add_stem_cell(evict=True)
    assert await pool.remove_idle(lambda c: True, "keep-alive ended") == 1
    assert [(e.function, e.reason) for e in pool.evictions.recent()] == [
        ("guest/a", "keep-alive ended"), ("guest/b", "evicted for the stem-cell minimum")]


async def test_shutdown_is_no_eviction(tmp_path: Path) -> None:
    pool, backend = make_pool(tmp_path)
    hold(pool, tmp_path, "stem", ContainerState.STEM, None)
    await pool.shutdown()
    assert backend.removed == ["stem"] and pool.evictions.recent() == []


async def test_the_ring_keeps_only_the_newest(tmp_path: Path) -> None:
    pool, _ = make_pool(tmp_path)
    log = EvictionLog(size=3)
    for i in range(5):
        log.record(hold(pool, tmp_path, f"c{i}", ContainerState.IDLE, f"guest/f{i}"), "why")
    assert [e.function for e in log.recent()] == ["guest/f4", "guest/f3", "guest/f2"]
    await pool.shutdown()
