"""While a backbone's server is down the pool places no new container on it: warm ones keep
serving, a start waits for the server (and fails naming the backbone when the start timeout
passes), nothing is evicted, pre-loaded or pre-warmed for it. The backend is a fake that
records what it is asked; the real engine is in `tests/integration/test_faults.py`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lorafaas.backbone.health import BackboneDown, BackboneHealth
from lorafaas.invoker.backend import ContainerInfo, ContainerSpec
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, FunctionRef, PoolConfig
from lorafaas.invoker.runtime_client import RuntimeClient
from lorafaas.names import QualifiedName


class StartRefused(Exception):
    """The fake engine's answer to a start: the test only asks whether one was tried."""


class RecordingBackend:
    """A backend that records starts (and refuses them) and removals."""

    def __init__(self) -> None:
        self.starts: list[str] = []
        self.removed: list[str] = []

    def start(self, spec: ContainerSpec) -> ContainerInfo:
        self.starts.append(spec.labels["lorafaas.action"])
        raise StartRefused(spec.name)

    def remove(self, container_id: str) -> None:
        self.removed.append(container_id)


def function(tmp_path: Path, name: str) -> FunctionRef:
    adapter = tmp_path / "adapters" / name
    adapter.mkdir(parents=True, exist_ok=True)
    return FunctionRef(f"guest/{name}@1", QualifiedName.from_path(f"guest/{name}"), adapter, 1024, backbone="demo")


@pytest.fixture
def health() -> BackboneHealth:
    health = BackboneHealth()
    health.mark_up("demo")
    health.mark_down("demo")
    return health


@pytest.fixture
async def pool(tmp_path: Path, health: BackboneHealth) -> AsyncIterator[ContainerPool]:
    """A full pool (one warm container of `warm`) whose backbone is down."""
    config = PoolConfig(invoker_id="unit", image="img", run_dir=tmp_path, pids_limit=8,
                        start_timeout_s=1.5, max_instances=2, memory_mb=1024,
                        stem_memory_mb=1024, backbone_sharing=False)  # no server: no channel
    pool = ContainerPool(RecordingBackend(), config,  # type: ignore[arg-type]
                         {"demo": BackboneMounts(tmp_path / "a.sock", tmp_path / "pub")},
                         health=health)
    warm, client = function(tmp_path, "warm"), RuntimeClient(tmp_path / "w1.sock")
    pool._containers["w1"] = PooledContainer(
        ContainerInfo("w1", "w1", 0), ContainerFolders(tmp_path / "c" / "w1"), client, 1024,
        ContainerState.IDLE, warm.key, warm.path, backbone="demo")
    yield pool
    await client.close()


async def test_a_warm_container_keeps_serving_while_its_backbone_is_down(
        pool: ContainerPool, tmp_path: Path) -> None:
    lease = await pool.acquire(function(tmp_path, "warm"))
    assert lease.start_kind == "warm" and lease.container.info.id == "w1"


async def test_a_start_waits_then_fails_naming_the_backbone_and_evicts_nothing(
        pool: ContainerPool, tmp_path: Path) -> None:
    with pytest.raises(BackboneDown, match="backbone 'demo' is down"):
        await pool.acquire(function(tmp_path, "new"))
    backend = pool.backend
    assert backend.starts == [] and backend.removed == []  # type: ignore[attr-defined]
    assert [c.info.id for c in pool.containers()] == ["w1"]


async def test_a_start_goes_on_once_the_backbone_is_up_again(
        pool: ContainerPool, tmp_path: Path, health: BackboneHealth) -> None:
    acquiring = asyncio.create_task(pool.acquire(function(tmp_path, "new")))
    await asyncio.sleep(0.3)
    assert not acquiring.done() and pool.backend.starts == []  # type: ignore[attr-defined]
    health.mark_up("demo", restarted=True)
    with pytest.raises(StartRefused):  # it was tried: the backbone is up
        await acquiring
    assert pool.backend.starts == ["guest/new"]  # type: ignore[attr-defined]
    assert pool.backend.removed == ["w1"]  # type: ignore[attr-defined]  # evicted for it


async def test_no_stem_cell_or_preload_is_started_on_a_backbone_that_is_down(
        pool: ContainerPool, tmp_path: Path) -> None:
    assert not await pool.add_stem_cell("demo", evict=True)
    assert not await pool.preload(function(tmp_path, "new"))
    assert pool.backend.starts == [] and pool.backend.removed == []  # type: ignore[attr-defined]
