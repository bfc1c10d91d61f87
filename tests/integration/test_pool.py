"""The container pool against the real Docker engine: placement order, eviction, the
stem-cell minimum in a full pool, waiting, orphan clean-up, health-check replacement, and
no container left of an action deleted while its container started."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lorafaas.invoker.backend import LABEL_ACTION, LABEL_INVOKER
from lorafaas.invoker.containers import ContainerState
from lorafaas.invoker.docker_backend import DockerBackend
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, FunctionRef, PoolConfig
from lorafaas.invoker.prewarm import PrewarmConfig
from lorafaas.names import QualifiedName

pytestmark = pytest.mark.docker
MEMORY_MB = 1024


def make_pool(backbone: BackboneMounts, runtime_image: str, run_dir: Path, invoker_id: str,
              memory_mb: int = 8 * MEMORY_MB, max_instances: int = 4) -> ContainerPool:
    """A pool on the real engine."""
    config = PoolConfig(invoker_id=invoker_id, image=runtime_image, run_dir=run_dir,
                        pids_limit=256, start_timeout_s=120, max_instances=max_instances,
                        memory_mb=memory_mb, stem_memory_mb=MEMORY_MB)
    return ContainerPool(DockerBackend(), config, BackboneMounts(backbone.control_socket,
                                                                 backbone.publish_dir))


def function(demo_models, name: str) -> FunctionRef:  # type: ignore[no-untyped-def]
    """A function of a demo adapter."""
    return FunctionRef(key=f"guest/{name}@0.0.1:x", name=QualifiedName.from_path(f"guest/{name}"),
                       adapter_dir=demo_models.adapters[name], memory_mb=MEMORY_MB)


@pytest.fixture
async def pool(backbone, runtime_image, short_dir) -> AsyncIterator[ContainerPool]:  # type: ignore[no-untyped-def]
    """A pool removed after the test."""
    pool = make_pool(backbone, runtime_image, short_dir, f"pool{uuid.uuid4().hex[:8]}")
    yield pool
    await pool.shutdown()


async def test_placement_order_warm_preloaded_prewarm_cold(pool, demo_models):  # type: ignore[no-untyped-def]
    pirate, shout = function(demo_models, "pirate"), function(demo_models, "shout")
    assert await pool.preload(pirate)
    lease = await pool.acquire(pirate)
    assert lease.start_kind == "preloaded" and lease.init_breakdown == {}
    await pool.release(lease.container)
    lease = await pool.acquire(pirate)
    assert lease.start_kind == "warm"
    await pool.release(lease.container)

    assert await pool.add_stem_cell()
    lease = await pool.acquire(shout)
    assert lease.start_kind == "prewarm"
    # A stem cell has paid for the libraries and the backbone already.
    assert set(lease.init_breakdown) == {"adapter", "tokenizer", "kernels"}
    assert set(lease.init_memory) == set(lease.init_breakdown)  # each one sized too
    await pool.release(lease.container)

    other = FunctionRef(key="guest/other@0.0.1:x", name=QualifiedName.from_path("guest/other"),
                        adapter_dir=demo_models.adapters["shout"], memory_mb=MEMORY_MB)
    lease = await pool.acquire(other)
    assert lease.start_kind == "cold"
    assert set(lease.init_breakdown) == {"libraries", "backbone", "adapter", "tokenizer",
                                         "kernels"}
    assert set(lease.init_memory) == set(lease.init_breakdown)
    assert lease.init_memory["libraries"] > 50 * 1024 * 1024  # torch and transformers
    states = {c.function_path: c.state.value for c in pool.containers()}
    assert states == {"guest/pirate": "warm", "guest/shout": "warm", "guest/other": "busy"}


async def test_request_takes_a_starting_stem_cell_rather_than_a_cold_start(  # type: ignore[no-untyped-def]
        pool, demo_models):
    adding = asyncio.create_task(pool.add_stem_cell())
    while not pool.containers():  # the stem cell's container exists and is initializing
        await asyncio.sleep(0.05)
    lease = await pool.acquire(function(demo_models, "pirate"))
    assert await adding
    assert lease.start_kind == "prewarm"
    assert len(pool.containers()) == 1
    await pool.release(lease.container)


async def test_least_recently_used_idle_container_is_evicted(backbone, runtime_image,  # type: ignore[no-untyped-def]
                                                             short_dir, demo_models):
    pool = make_pool(backbone, runtime_image, short_dir, f"pool{uuid.uuid4().hex[:8]}",
                     memory_mb=2 * MEMORY_MB)
    try:
        pirate, shout = function(demo_models, "pirate"), function(demo_models, "shout")
        for f in (pirate, shout):
            await pool.release((await pool.acquire(f)).container)
        third = FunctionRef(key="guest/third@0.0.1:x", name=QualifiedName.from_path("guest/third"),
                            adapter_dir=demo_models.adapters["pirate"], memory_mb=MEMORY_MB)
        lease = await pool.acquire(third)
        assert lease.start_kind == "cold"
        assert sorted(c.function_path for c in pool.containers()) == ["guest/shout",
                                                                      "guest/third"]
        assert pool.used_mb() == 2 * MEMORY_MB
    finally:
        await pool.shutdown()



async def test_a_pool_full_of_preloaded_containers_keeps_its_stem_cell(  # type: ignore[no-untyped-def]
        backbone, runtime_image, short_dir, demo_models):
    pool = make_pool(backbone, runtime_image, short_dir, f"pool{uuid.uuid4().hex[:8]}",
                     memory_mb=2 * MEMORY_MB)
    try:
        pirate, shout = function(demo_models, "pirate"), function(demo_models, "shout")
        tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig()))
        for f in (pirate, shout):
            tracker.arrived(f, time.time())  # the spare share wants both kept loaded
            assert await pool.preload(f)
        assert not await pool.add_stem_cell(), "the pool should be full"
        maintenance = Maintenance(pool, tracker, PrewarmConfig(min_count=1, max_count=1),
                                  period_s=1.0, spare_share=1.0)

        await maintenance.tick(time.time())  # the minimum evicts the older pre-loaded one
        held = {c.function_path: c.state for c in pool.containers()}
        assert held == {None: ContainerState.STEM, "guest/shout": ContainerState.PRELOADED}
        await maintenance.tick(time.time())  # pre-loading again does not take its memory
        assert {c.function_path: c.state for c in pool.containers()} == held

        new = FunctionRef(key="guest/new@0.0.1:x", name=QualifiedName.from_path("guest/new"),
                          adapter_dir=demo_models.adapters["pirate"], memory_mb=MEMORY_MB)
        lease = await pool.acquire(new)
        assert lease.start_kind == "prewarm"  # the activation record's startKind
        assert set(lease.init_breakdown) == {"adapter", "tokenizer", "kernels"}
        await pool.release(lease.container)
    finally:
        await pool.shutdown()

async def test_request_waits_for_a_busy_function_at_its_instance_cap(  # type: ignore[no-untyped-def]
        backbone, runtime_image, short_dir, demo_models):
    pool = make_pool(backbone, runtime_image, short_dir, f"pool{uuid.uuid4().hex[:8]}",
                     max_instances=1)
    try:
        pirate = function(demo_models, "pirate")
        first = await pool.acquire(pirate)
        second = asyncio.create_task(pool.acquire(pirate))
        await asyncio.sleep(0.5)
        assert not second.done()
        await pool.release(first.container)
        lease = await asyncio.wait_for(second, 10)
        assert lease.start_kind == "warm" and lease.container is first.container
    finally:
        await pool.shutdown()


async def test_restarted_invoker_removes_its_orphans(backbone, runtime_image, short_dir,  # type: ignore[no-untyped-def]
                                                     demo_models, docker_client):
    invoker_id = f"pool{uuid.uuid4().hex[:8]}"
    crashed = make_pool(backbone, runtime_image, short_dir, invoker_id)
    lease = await crashed.acquire(function(demo_models, "pirate"))
    orphan_id = lease.container.info.id
    await lease.container.client.close()  # the invoker "crashes": its container stays
    other = make_pool(backbone, runtime_image, short_dir, f"other{uuid.uuid4().hex[:8]}")
    await other.add_stem_cell()
    try:
        restarted = make_pool(backbone, runtime_image, short_dir, invoker_id)
        assert await restarted.remove_orphans() == 1
        ids = {c.id for c in docker_client.containers.list(all=True)}  # type: ignore[attr-defined]
        assert orphan_id not in ids
        assert other.containers()[0].info.id in ids, "another invoker's container was kept"
    finally:
        await other.shutdown()


async def test_container_failing_health_check_is_replaced(pool, demo_models):  # type: ignore[no-untyped-def]
    pirate = function(demo_models, "pirate")
    lease = await pool.acquire(pirate)
    await pool.release(lease.container)
    await asyncio.to_thread(pool.backend.client.api.kill, lease.container.info.id)
    assert await pool.health_check() == 1
    assert pool.containers() == []
    lease = await pool.acquire(pirate)
    assert lease.start_kind == "cold"


def labelled(docker_client, pool: ContainerPool, path: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Ids of the engine's containers of the pool's invoker labelled with the action path."""
    filters = {"label": [f"{LABEL_INVOKER}={pool.config.invoker_id}", f"{LABEL_ACTION}={path}"]}
    return [c.id for c in docker_client.containers.list(all=True, filters=filters)]


async def none_left(docker_client, pool: ContainerPool, path: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether no container of the action remains, waiting a generous while for removal."""
    deadline = time.monotonic() + 120
    while labelled(docker_client, pool, path) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    return not labelled(docker_client, pool, path)


async def test_an_action_deleted_during_a_cold_start_leaves_no_container(  # type: ignore[no-untyped-def]
        pool, demo_models, docker_client):
    pirate = function(demo_models, "pirate")
    acquiring = asyncio.create_task(pool.acquire(pirate))
    while not any(c.function_path == pirate.path for c in pool.containers()):
        assert not acquiring.done(), "the start should still be running"
        await asyncio.sleep(0.05)
    assert [c.state for c in pool.containers()] == [ContainerState.STARTING]
    await pool.remove_function(pirate.path)  # Invoker.retire: the action is deleted
    lease = await acquiring  # the request accepted before the delete is still served
    assert lease.start_kind == "cold"
    await pool.release(lease.container)
    assert pool.containers() == []
    assert await none_left(docker_client, pool, pirate.path)


async def test_an_action_deleted_while_it_is_preloaded_leaves_no_container(  # type: ignore[no-untyped-def]
        pool, demo_models, docker_client):
    shout = function(demo_models, "shout")
    preloading = asyncio.create_task(pool.preload(shout))
    await asyncio.sleep(0)  # the start has begun, its container may not exist yet
    await pool.remove_function(shout.path)
    assert not await preloading
    assert pool.containers() == [] and pool.used_mb() == 0
    assert await none_left(docker_client, pool, shout.path)
