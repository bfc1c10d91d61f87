"""After a restart of a CUDA IPC backbone server the pool replaces the containers it
attached instead of opening their channels again: their device memory went with the old
server. (On tmpfs it re-opens them: tests/unit/test_attach_channels.py.)"""

from __future__ import annotations

from pathlib import Path

from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.containers import ContainerFolders, ContainerState, PooledContainer
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig
from tests.unit.test_attach_channels import Removed, Server, ask


def cuda_pool(root: Path, server: Server, fake: Removed) -> ContainerPool:
    config = PoolConfig(invoker_id="unit", image="img", run_dir=root, pids_limit=8,
                        start_timeout_s=1, max_instances=3)
    return ContainerPool(fake, config,  # type: ignore[arg-type]
                         BackboneMounts(server.control_socket, root / "published", "cuda-ipc", 0))


def add(pool: ContainerPool, root: Path, key: str, state: ContainerState,
        fake: Removed) -> PooledContainer:
    folders = ContainerFolders(root / "c" / key)
    folders.create()
    container = PooledContainer(ContainerInfo(f"id-{key}", f"lorafaas-unit-{key}", 0), folders,
                                fake, 1024, state, backbone="default")  # type: ignore[arg-type]
    pool._containers[container.info.id] = container
    return container


async def test_containers_of_a_restarted_cuda_server_are_replaced_never_reattached(
        short_dir: Path) -> None:
    fake = Removed()
    async with Server(short_dir) as restarted:
        pool = cuda_pool(short_dir, restarted, fake)
        idle = add(pool, short_dir, "k1", ContainerState.IDLE, fake)
        busy = add(pool, short_dir, "k2", ContainerState.BUSY, fake)
        kept = add(pool, short_dir, "k3", ContainerState.IDLE, fake)
        # k3 attached to this server (its channel is open); k1, k2 to the one before.
        await pool.channels["default"].open(kept.folders.channel, kept.folders.attach_socket)
        assert await pool.ensure_channels() == 0  # nothing opened again
        assert fake.removed == ["id-k1"]  # the idle one at once
        assert idle.info.id not in pool._containers and not idle.folders.root.exists()
        assert busy.info.id in pool._doomed  # the busy one once its activation ends
        await pool.release(busy)
        assert fake.removed == ["id-k1", "id-k2"]
        assert [c.info.id for c in pool.containers()] == ["id-k3"]
        channels = await ask(restarted.control_socket, {"op": "channels"})
        assert channels["channels"] == [kept.folders.channel]


async def test_a_cuda_runtime_sees_its_server_gone_or_replaced_by_the_epoch(
        short_dir: Path) -> None:
    import asyncio

    from lorafaas.backbone.channels import Channels, SameShare
    from lorafaas.runtime.attach import BackboneAttachment

    cuda = {"transport": "cuda-ipc", "views": {}, "storages": []}
    socket_path = short_dir / "c1" / "attach.sock"
    socket_path.parent.mkdir()
    first = Channels(SameShare(cuda), epoch="start-1")
    await first.open("c1", socket_path)
    attachment = await asyncio.to_thread(BackboneAttachment, socket_path, "unit")
    assert attachment.epoch == "start-1"
    assert await asyncio.to_thread(attachment.is_current)
    await first.close_all()  # the server exited
    assert not await asyncio.to_thread(attachment.is_current)
    restarted = Channels(SameShare(cuda), epoch="start-2")
    await restarted.open("c1", socket_path)  # the same path, another server
    try:
        assert not await asyncio.to_thread(attachment.is_current)
    finally:
        await restarted.close_all()
    tmpfs = Channels(SameShare({"transport": "tmpfs"}), epoch="start-3")
    await tmpfs.open("c1", socket_path)
    on_tmpfs = await asyncio.to_thread(BackboneAttachment, socket_path, "unit")
    await tmpfs.close_all()
    assert await asyncio.to_thread(on_tmpfs.is_current)  # its pages outlive the server
