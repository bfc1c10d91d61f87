"""The container pool: warm containers per action, cold starts, removal and orphan clean-up."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lorafaas.invoker.backend import (
    LABEL_ACTION,
    LABEL_INVOKER,
    ContainerBackend,
    ContainerInfo,
    ContainerSpec,
    Mount,
)
from lorafaas.invoker.runtime_client import RuntimeClient, RuntimeUnavailable
from lorafaas.wire.runtime_protocol import RUNTIME_SOCKET_NAME

logger = logging.getLogger(__name__)

IO_TARGET = "/lorafaas/io"
ATTACH_TARGET = "/lorafaas/attach"


@dataclass(frozen=True)
class FunctionRef:
    """What the pool needs of an action to start and reuse its containers."""

    key: str  # namespace/name@version:digest: containers are reused only for the same code
    path: str  # namespace/name
    adapter_dir: Path
    memory_mb: int


@dataclass(frozen=True)
class BackboneMounts:
    """The backbone server's attach socket and published folder, mounted into containers."""

    attach_socket: Path
    publish_dir: Path


@dataclass
class PooledContainer:
    """A function container and its runtime connection."""

    info: ContainerInfo
    function_key: str
    socket_dir: Path
    client: RuntimeClient
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Lease:
    """A container handed to one activation, and how it was obtained."""

    container: PooledContainer
    start_kind: str  # warm or cold
    init_breakdown: dict[str, float]
    init_ms: float


@dataclass(frozen=True)
class PoolConfig:
    """Settings the pool reads."""

    invoker_id: str
    image: str
    run_dir: Path
    pids_limit: int
    start_timeout_s: float
    max_instances: int  # containers of one function at once


class ContainerPool:
    """Hands containers to activations: a warm idle one of the function, else a cold start."""

    def __init__(self, backend: ContainerBackend, config: PoolConfig,
                 backbone: BackboneMounts) -> None:
        self.backend = backend
        self.config = config
        self.backbone = backbone
        self._containers: dict[str, PooledContainer] = {}
        self._starting: Counter[str] = Counter()
        # Notified whenever a container is freed, removed or done starting.
        self._changed = asyncio.Condition()

    def containers(self) -> list[PooledContainer]:
        """Every container the pool holds."""
        return list(self._containers.values())

    async def acquire(self, function: FunctionRef) -> Lease:
        """A container for one activation of `function`, initialized.

        A warm idle container of the function first; else a cold start while the function
        has fewer than `max_instances`; else wait until one of its containers is free.
        """
        async with self._changed:
            while True:
                warm = self._idle_container(function.key)
                if warm is not None:
                    warm.busy = True
                    return Lease(warm, "warm", {}, 0.0)
                if self._instances(function.key) < self.config.max_instances:
                    self._starting[function.key] += 1
                    break
                await self._changed.wait()
        try:
            return await self._cold_start(function)
        finally:
            async with self._changed:
                self._starting[function.key] -= 1
                self._changed.notify_all()

    def _instances(self, function_key: str) -> int:
        running = sum(c.function_key == function_key for c in self._containers.values())
        return running + self._starting[function_key]

    def _idle_container(self, function_key: str) -> PooledContainer | None:
        idle = [c for c in self._containers.values()
                if c.function_key == function_key and not c.busy]
        return max(idle, key=lambda c: c.last_used) if idle else None

    async def _cold_start(self, function: FunctionRef) -> Lease:
        started = time.monotonic()
        spec, socket_dir = self._container_spec(function)
        try:
            info = await asyncio.to_thread(self.backend.start, spec)
        except Exception:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        container = PooledContainer(info, function.key, socket_dir,
                                    RuntimeClient(socket_dir / RUNTIME_SOCKET_NAME), busy=True)
        self._containers[info.id] = container
        try:
            await container.client.wait_ready(
                self.config.start_timeout_s,
                lambda: asyncio.to_thread(self.backend.is_running, info.id))
            breakdown = await container.client.init({"name": function.path, "main": "main"})
        except BaseException:
            await self.discard(container, "initialization failed")
            raise
        return Lease(container, "cold", breakdown, (time.monotonic() - started) * 1000)

    def _container_spec(self, function: FunctionRef) -> tuple[ContainerSpec, Path]:
        suffix = uuid.uuid4().hex[:10]
        socket_dir = self.config.run_dir / "c" / suffix
        socket_dir.mkdir(parents=True)
        os.chmod(socket_dir, 0o777)  # the runtime runs as nobody and creates its socket here
        name = f"lorafaas-{self.config.invoker_id}-{suffix}"
        spec = ContainerSpec(
            name=name, image=self.config.image, memory_mb=function.memory_mb,
            pids_limit=self.config.pids_limit,
            labels={LABEL_INVOKER: self.config.invoker_id, LABEL_ACTION: function.path},
            environment={"LORAFAAS_CONTAINER_NAME": name,
                         "LORAFAAS_RUNTIME_SOCKET": f"{IO_TARGET}/{RUNTIME_SOCKET_NAME}",
                         "LORAFAAS_ATTACH_SOCKET":
                             f"{ATTACH_TARGET}/{self.backbone.attach_socket.name}",
                         "LORAFAAS_BACKBONE_DIR": "/backbone",
                         "LORAFAAS_ADAPTER_DIR": "/adapter"},
            mounts=[Mount(socket_dir, IO_TARGET, read_only=False),
                    Mount(self.backbone.attach_socket.parent, ATTACH_TARGET),
                    Mount(self.backbone.publish_dir, "/backbone"),
                    Mount(function.adapter_dir, "/adapter")])
        return spec, socket_dir

    async def release(self, container: PooledContainer) -> None:
        """The activation is done; the container stays warm for the next one."""
        async with self._changed:
            container.busy = False
            container.last_used = time.monotonic()
            self._changed.notify_all()

    async def discard(self, container: PooledContainer, reason: str) -> None:
        """Remove a container that failed or is no longer wanted."""
        self._containers.pop(container.info.id, None)
        logger.info("removing container %s: %s", container.info.name, reason)
        await container.client.close()
        await asyncio.to_thread(self.backend.remove, container.info.id)
        shutil.rmtree(container.socket_dir, ignore_errors=True)
        async with self._changed:
            self._changed.notify_all()

    async def remove_function(self, function_path: str) -> None:
        """Remove the idle containers of an action (it was deleted or updated)."""
        for container in [c for c in self._containers.values()
                          if c.function_key.startswith(function_path + "@") and not c.busy]:
            await self.discard(container, "action changed")

    async def remove_orphans(self) -> int:
        """Remove containers a previous run of this invoker left behind."""
        orphans = await asyncio.to_thread(self.backend.list_labelled, self.config.invoker_id)
        for container_id in orphans:
            if container_id not in self._containers:
                await asyncio.to_thread(self.backend.remove, container_id)
        if orphans:
            logger.info("removed %d orphan containers", len(orphans))
        shutil.rmtree(self.config.run_dir / "c", ignore_errors=True)
        return len(orphans)

    async def shutdown(self) -> None:
        """Remove every container."""
        for container in list(self._containers.values()):
            await self.discard(container, "invoker stopping")

    async def check_alive(self, container: PooledContainer) -> tuple[int | None, bool]:
        """Exit code and OOM flag of a container (None while it runs)."""
        return await asyncio.to_thread(self.backend.exit_status, container.info.id)


__all__ = ["BackboneMounts", "ContainerPool", "FunctionRef", "Lease", "PoolConfig",
           "PooledContainer", "RuntimeUnavailable"]
