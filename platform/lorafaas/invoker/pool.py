"""The container pool: placement in OpenWhisk's order, memory slots, eviction, orphans.

Placement for an activation of a function: a warm container of the function, then a
container pre-loaded with it, then a pre-warmed stem cell specialized for it (or one that
is starting: it is ready before a cold start begun now would be), then a cold start, then a
cold start after evicting idle containers; else the request waits until a container is
freed. Memory is counted in megabytes of container limits against the pool's size.

Eviction takes pre-loaded containers first (no request has used them yet), then warm idle
ones, least recently used first within each, and stem cells last: they serve any function.
The stem-cell minimum may evict pre-loaded and warm idle containers to be restored, so that
a pool full of pre-loaded functions still starts a new function from a stem cell.

With a shared backbone each container attaches on its own channel (`attach_channels`):
opened before the container starts, closed when it is removed, opened again by
`ensure_channels` for live containers once a restarted backbone server lacks them.

An action deleted or updated (`remove_function`) loses its idle containers at once; one
busy or still starting for it goes as soon as its activation ends or its start returns, so
no container of a retired version outlives its work.

A backbone whose server is down (`BackboneHealth`, written by its supervisor) gets no new
container: warm and pre-loaded ones keep serving, a start waits for the server (up to the
start timeout, then fails naming the backbone), and nothing is evicted, pre-loaded or
pre-warmed for it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lorafaas.backbone.accelerator import CUDA_IPC, TMPFS
from lorafaas.backbone.health import BackboneHealth
from lorafaas.invoker.attach_channels import AttachChannels, ChannelUnavailable
from lorafaas.invoker.backend import (
    LABEL_ACTION,
    LABEL_INVOKER,
    ContainerBackend,
    ContainerSpec,
    Mount,
)
from lorafaas.invoker.code_containers import code_init_value, code_spec, fill_code
from lorafaas.invoker.containers import (
    ContainerFolders,
    ContainerState,
    PooledContainer,
    is_namespace_key,
)
from lorafaas.invoker.device_options import device_options
from lorafaas.invoker.evictions import EvictionLog
from lorafaas.invoker.offloading import Offloader
from lorafaas.invoker.prewarm import ColdStartWindow, StemBackoff
from lorafaas.invoker.runtime_client import RuntimeClient, RuntimeUnavailable
from lorafaas.invoking.activations import FunctionRef
from lorafaas.wire.attach import CHANNEL_SOCKET_NAME
from lorafaas.wire.runtime_protocol import RUNTIME_SOCKET_NAME

logger = logging.getLogger(__name__)

IO_TARGET = "/lorafaas/io"
ATTACH_TARGET = "/lorafaas/attach"
STEM_LABEL = "(stem cell)"
SHUTDOWN = "invoker stopping"  # a removal that is no eviction: not recorded
# What eviction takes first: a pre-loaded container was loaded on a prediction, a warm one
# has served its function, and a stem cell can become any function's container.
EVICTION_ORDER = (ContainerState.PRELOADED, ContainerState.IDLE, ContainerState.STEM)


@dataclass(frozen=True)
class BackboneMounts:
    """The backbone server's control socket (the pool opens each container's own attach
    channel through it; never mounted) and its published folder, mounted into containers
    (containers never read the checkpoint itself, which may be readable by its owner only)."""

    control_socket: Path
    publish_dir: Path
    # How the server published (lorafaas.backbone.accelerator), and its CUDA device.
    transport: str = TMPFS
    device: int | None = None
    device_free_bytes: int | None = None  # the device's free memory once it published


@dataclass(frozen=True)
class Lease:
    """A container handed to one activation, and how it was obtained."""

    container: PooledContainer
    start_kind: str  # warm, preloaded, prewarm or cold
    init_breakdown: dict[str, float]  # what was loaded for this activation, ms per artifact
    init_ms: float
    init_memory: dict[str, int] = field(default_factory=dict)  # host bytes per artifact


@dataclass(frozen=True)
class PoolConfig:
    """Settings the pool reads."""

    invoker_id: str
    image: str
    run_dir: Path
    pids_limit: int
    start_timeout_s: float
    max_instances: int  # containers of one function at once
    memory_mb: int = 16_384  # the pool's size: the sum of its containers' memory limits
    stem_memory_mb: int = 2_048  # limit of a stem cell (it becomes any function's container)
    cold_start_window_s: float = 60.0  # reactive pre-warm counts the cold starts of this window
    torch_threads: int = 0  # each container's torch threads (0: torch's default)
    # Off: each container loads a private copy of the published backbone (the
    # OpenWhisk- and InstaInfer-style baselines); no attach socket is mounted.
    backbone_sharing: bool = True
    # What requests sample with when they name no temperature (runtime.sampling).
    generation_defaults: str = "greedy"


class UnknownBackbone(LookupError):
    """A function names a backbone this pool does not serve."""


class FunctionRetired(RuntimeError):
    """The function's action was deleted or updated while a container started for it."""


class ContainerPool:
    """Hands containers to activations and keeps the pool within its memory.

    Each container serves one backbone, the one its function names: a stem cell attaches
    to one backbone and is only specialized for functions of that backbone."""

    def __init__(self, backend: ContainerBackend, config: PoolConfig,
                 backbone: BackboneMounts | Mapping[str, BackboneMounts],
                 offloader: Offloader | None = None,
                 health: BackboneHealth | None = None) -> None:
        # One mounts object: a pool of one backbone, called "default".
        self.backbones = dict(backbone) if isinstance(backbone, Mapping) else {
            "default": backbone}
        if not self.backbones:
            raise ValueError("the pool needs at least one backbone")
        self.default_backbone = next(iter(self.backbones))
        self.channels = {name: AttachChannels(mounts.control_socket)
                         for name, mounts in self.backbones.items()}
        self.backend = backend
        self.config = config
        self.offloader = offloader  # keeps running containers within accelerator memory
        self.health = health or BackboneHealth()  # which backbones' servers are up
        # Cold starts per backbone: each backbone's stem cells are pre-warmed by its own.
        self.cold_starts = {name: ColdStartWindow(config.cold_start_window_s)
                            for name in self.backbones}
        # Stem cells that fail to initialize, per backbone: the maintenance backs off.
        self.stem_backoff = StemBackoff()
        self._containers: dict[str, PooledContainer] = {}
        self._starting: Counter[str] = Counter()  # cold starts in progress per function
        self._reserved_mb = 0  # memory of containers being started
        self._stems_starting: Counter[str] = Counter()  # per backbone
        self._stem_waiters: Counter[str] = Counter()  # requests waiting for one, per backbone
        self._retirements: Counter[str] = Counter()  # remove_function calls per action path
        self._doomed: set[str] = set()  # ids of containers to remove once their work ends
        self.evictions = EvictionLog()  # what was removed, when and why (the platform page)
        # Notified whenever a container is freed, removed or done starting.
        self._changed = asyncio.Condition()
        # Folders and spec of a namespace container (lorafaas.invoker.sharing); None: the
        # pool starts function containers only.
        self.namespace_start: NamespaceStart | None = None

    # --- what the pool holds -------------------------------------------------------------

    def backbone_of(self, function: FunctionRef) -> str:
        """The name of the backbone the function runs on; UnknownBackbone if not served."""
        name = function.backbone or self.default_backbone
        if name not in self.backbones:
            raise UnknownBackbone(f"backbone {name!r} of {function.path} is not served here "
                                  f"(served: {', '.join(self.backbones)})")
        return name

    def containers(self) -> list[PooledContainer]:
        """Every container the pool holds."""
        return list(self._containers.values())

    def instances(self, function_path: str) -> list[dict[str, object]]:
        """The containers of an action, as the API shows them."""
        return [c.describe() for c in self._containers.values()
                if c.function_path == function_path]

    def used_mb(self) -> int:
        """Memory of every container, running or starting."""
        return sum(c.memory_mb for c in self._containers.values()) + self._reserved_mb

    # --- placement -----------------------------------------------------------------------

    async def acquire(self, function: FunctionRef,
                      on_start: Callable[[], None] | None = None) -> Lease:
        """A container for one activation of `function`, initialized (see module doc), with
        its artifacts in accelerator memory when an offloader keeps a budget.

        `on_start` is called once when no container is ready at once: one is started, or
        the request waits for one."""
        once = _Once(on_start)
        lease = await self._place(function, once)
        if self.offloader is not None and not function.is_code:
            try:
                await self.offloader.before_run(lease.container, self.containers, once)
            except RuntimeUnavailable:
                await self.discard(lease.container, "restoring its artifacts failed")
                raise
            except BaseException:  # cancelled (timed out) while waiting for memory
                await self.release(lease.container)
                raise
        return lease

    async def _place(self, function: FunctionRef, on_start: _Once) -> Lease:
        waiting_since: float | None = None  # for a backbone that is down
        while True:
            async with self._changed:
                lease = self._reuse(function)
                if lease is not None:
                    return lease
                if not self._backbone_up(function):
                    on_start()
                    waiting_since = waiting_since or time.monotonic()
                    await self._wait_for_backbone(function, waiting_since)
                    continue
                stem = self._claim_stem(function)
                if stem is None and self._stem_coming(function):
                    on_start()
                    await self._wait_for_stem(function)
                    continue
                victims = [] if stem else self._reserve_cold_start(function)
                if stem is None and victims is None:
                    on_start()
                    await self._changed.wait()
                    continue
            on_start()
            if stem is not None:
                return await self._specialize(stem, function)
            await self._remove_all(victims or [], "evicted for a cold start")
            return await self._cold_start(function)

    async def _wait_for_backbone(self, function: FunctionRef, since: float) -> None:
        """Wait a while for the backbone to come up, or a warm container to be freed;
        BackboneDown once the start timeout has passed."""
        waited = time.monotonic() - since
        if waited > self.config.start_timeout_s:
            raise self.health.down_error(self.backbone_of(function), waited)
        with contextlib.suppress(TimeoutError):
            # The health is not an asyncio condition: look again each second.
            await asyncio.wait_for(self._changed.wait(), 1.0)

    def _reuse(self, function: FunctionRef) -> Lease | None:
        for state, kind in ((ContainerState.IDLE, "warm"), (ContainerState.PRELOADED,
                                                              "preloaded")):
            candidates = [c for c in self._containers.values()
                          if c.function_key == function.key and c.state is state]
            if candidates:
                container = max(candidates, key=lambda c: c.last_used)
                container.state = ContainerState.BUSY
                return Lease(container, kind, {}, 0.0)
        return None

    def _backbone_up(self, function: FunctionRef) -> bool:
        """Whether the function's backbone server is up (a code action has none)."""
        return function.is_code or self.health.is_up(self.backbone_of(function))

    def _claim_stem(self, function: FunctionRef) -> PooledContainer | None:
        # A stem cell holds a backbone: a code action's container is started cold.
        if function.is_code or self._at_most(function.key):
            return None
        backbone = self.backbone_of(function)
        stems = [c for c in self._containers.values() if c.state is ContainerState.STEM
                 and c.backbone == backbone and c.memory_mb >= function.memory_mb]
        if not stems:
            return None
        stem = min(stems, key=lambda c: c.created)
        stem.state, stem.function_key, stem.function_path = (ContainerState.STARTING,
                                                             function.key, function.path)
        return stem

    def _stem_coming(self, function: FunctionRef) -> bool:
        """Whether a stem cell being started is not yet promised to another request: it is
        ready sooner than a cold start begun now would be (it began earlier)."""
        if function.is_code:
            return False
        backbone = self.backbone_of(function)
        return (self._stem_waiters[backbone] < self._stems_starting[backbone]
                and self.config.stem_memory_mb >= function.memory_mb
                and not self._at_most(function.key))

    async def _wait_for_stem(self, function: FunctionRef) -> None:
        backbone = self.backbone_of(function)
        self._stem_waiters[backbone] += 1
        try:
            await self._changed.wait()
        finally:
            self._stem_waiters[backbone] -= 1

    def _reserve_cold_start(self, function: FunctionRef) -> list[PooledContainer] | None:
        """Reserve memory for a cold start, picking idle victims if needed; None: wait."""
        if self._at_most(function.key, stems=False):
            return None
        shortfall = self.used_mb() + function.memory_mb - self.config.memory_mb
        victims = self._least_recently_used(shortfall) if shortfall > 0 else []
        if victims is None:
            return None
        for victim in victims:
            del self._containers[victim.info.id]  # their memory is free from now on
        self._reserved_mb += function.memory_mb
        self._starting[function.key] += 1
        return victims

    def _least_recently_used(self, needed_mb: int) -> list[PooledContainer] | None:
        return pick_victims(self._containers.values(), needed_mb, EVICTION_ORDER)

    def _at_most(self, function_key: str, stems: bool = True) -> bool:
        """Whether the function has its most containers (a namespace container has one,
        and is never a stem cell's: stem cells run a function's runtime)."""
        if is_namespace_key(function_key):
            return stems or self._instances(function_key) >= 1
        return self._instances(function_key) >= self.config.max_instances

    def _instances(self, function_key: str) -> int:
        running = sum(c.function_key == function_key for c in self._containers.values())
        return running + self._starting[function_key]

    # --- starting containers -------------------------------------------------------------

    async def _specialize(self, stem: PooledContainer, function: FunctionRef) -> Lease:
        started = time.monotonic()
        try:
            stem.folders.fill_adapter(function.adapter_dir)
            loaded = await stem.client.init_measured({"name": function.path, "main": "main"})
        except BaseException:
            await self.discard(stem, "specialization failed")
            raise
        stem.state = ContainerState.BUSY
        return Lease(stem, "prewarm", loaded.breakdown, (time.monotonic() - started) * 1000,
                     loaded.memory)

    async def _cold_start(self, function: FunctionRef) -> Lease:
        started = time.monotonic()
        if not function.is_code:  # stem cells, pre-warmed by these, serve lora functions only
            self.cold_starts[self.backbone_of(function)].record(time.time())
        try:
            container = await self._start(function.memory_mb, function, ContainerState.BUSY)
        finally:
            async with self._changed:
                self._reserved_mb -= function.memory_mb
                self._starting[function.key] -= 1
                self._changed.notify_all()
        return Lease(container.pooled, "cold", container.init_breakdown,
                     (time.monotonic() - started) * 1000, container.init_memory)

    async def preload(self, function: FunctionRef) -> bool:
        """Start a container with `function` fully loaded, if memory allows; True if done."""
        async with self._changed:
            if (self._at_most(function.key, stems=False)
                    or not self._backbone_up(function)
                    or self.used_mb() + function.memory_mb > self.config.memory_mb):
                return False
            self._reserved_mb += function.memory_mb
            self._starting[function.key] += 1
        try:
            await self._start(function.memory_mb, function, ContainerState.PRELOADED)
        except FunctionRetired:
            return False
        finally:
            async with self._changed:
                self._reserved_mb -= function.memory_mb
                self._starting[function.key] -= 1
                self._changed.notify_all()
        return True

    async def add_stem_cell(self, backbone: str = "", evict: bool = False) -> bool:
        """Start a pre-warmed stem cell of a backbone (default: the pool's default), if
        memory allows; True if done.

        With `evict` (the stem-cell minimum), pre-loaded and then warm idle containers are
        removed to make room when the pool is full."""
        name = backbone or self.default_backbone
        if name not in self.backbones:
            raise UnknownBackbone(f"backbone {name!r} is not served here")
        if not self.health.is_up(name):
            return False  # it would fail to attach: no churn while the server restarts
        size = self.config.stem_memory_mb
        async with self._changed:
            shortfall = self.used_mb() + size - self.config.memory_mb
            victims: list[PooledContainer] | None = []
            if shortfall > 0:
                victims = (pick_victims(self._containers.values(), shortfall,
                                        EVICTION_ORDER[:2]) if evict else None)
                if victims is None:
                    return False
                for victim in victims:
                    del self._containers[victim.info.id]  # their memory is free from now on
            self._reserved_mb += size
            self._stems_starting[name] += 1
        try:
            await self._remove_all(victims or [], "evicted for the stem-cell minimum")
            await self._start(size, None, ContainerState.STEM, name)
        finally:
            async with self._changed:
                self._reserved_mb -= size
                self._stems_starting[name] -= 1
                self._changed.notify_all()
        return True

    async def _start(self, memory_mb: int, function: FunctionRef | None,
                     state: ContainerState, stem_backbone: str = "") -> _Started:
        backbone = stem_backbone if function is None else "" if function.is_code \
            else self.backbone_of(function)  # "": a code action's, with no backbone
        path = function.path if function is not None else None
        retirements = self._retirements[path] if path is not None else 0
        root = self.config.run_dir / "c" / uuid.uuid4().hex[:10]
        if function is not None and function.is_code:
            folders = ContainerFolders(root)
            folders.create()
            fill_code(folders, function.adapter_dir)
            spec = code_spec(folders, function, f"lorafaas-{self.config.invoker_id}-{root.name}",
                             self.config.image, self.config.invoker_id, self.config.pids_limit)
        elif function is not None and is_namespace_key(function.key):
            if self.namespace_start is None:
                raise RuntimeError("this pool starts no namespace containers")
            folders, spec = self.namespace_start(root, function, self.backbones[backbone])
        else:
            folders = ContainerFolders(root)
            folders.create()
            if function is not None:
                folders.fill_adapter(function.adapter_dir)
            spec = self._container_spec(folders, memory_mb, function, backbone)
        try:
            await self._open_channel(folders, backbone)
            info = await asyncio.to_thread(self.backend.start, spec)
        except BaseException:
            await self._close_channel(folders, backbone)
            folders.remove()
            raise
        container = PooledContainer(info, folders, RuntimeClient(folders.socket), memory_mb,
                                    ContainerState.STARTING,
                                    function.key if function else None,
                                    function.path if function else None, backbone=backbone)
        self._containers[info.id] = container
        try:
            await container.client.wait_ready(
                self.config.start_timeout_s,
                lambda: asyncio.to_thread(self.backend.is_running, info.id))
            value = ({"stage": "prewarm"} if function is None else code_init_value(function)
                     if function.is_code else {"name": function.path, "main": "main"})
            loaded = await container.client.init_measured(value)
        except BaseException:
            await self.discard(container, "initialization failed")
            raise
        if path is not None and self._retirements[path] != retirements:
            self._doomed.add(info.id)  # retired while it started (see the module doc)
        if info.id in self._doomed and state is not ContainerState.BUSY:
            await self.discard(container, "action changed while it started")
            raise FunctionRetired(f"{path} was deleted or updated while its container started")
        container.state = state
        return _Started(container, loaded.breakdown, loaded.memory)

    def _container_spec(self, folders: ContainerFolders, memory_mb: int,
                        function: FunctionRef | None, backbone_name: str = "") -> ContainerSpec:
        # The backbone's own socket and published folder (or checkpoint, without sharing).
        backbone = self.backbones[backbone_name or self.default_backbone]
        name = f"lorafaas-{self.config.invoker_id}-{folders.root.name}"
        environment = {"LORAFAAS_CONTAINER_NAME": name,
                       "LORAFAAS_RUNTIME_SOCKET": f"{IO_TARGET}/{RUNTIME_SOCKET_NAME}",
                       "LORAFAAS_ADAPTER_DIR": "/adapter",
                       "LORAFAAS_TORCH_THREADS": str(self.config.torch_threads),
                       # glibc gives each thread that allocates its own arena and keeps what
                       # a batch freed there: ~80 MB more per warm container after a batch
                       # of 8 (the generation runs on a worker thread). Two arenas keep it
                       # down; the runtime trims them once idle (runtime.idle_trim).
                       "MALLOC_ARENA_MAX": "2",
                       "LORAFAAS_GENERATION_DEFAULTS": self.config.generation_defaults}
        mounts = [Mount(folders.io, IO_TARGET, read_only=False),
                  Mount(folders.adapter, "/adapter")]
        # tmpfs: the published folder; CUDA: the generation files alone, and the GPU.
        device = device_options(backbone.transport, backbone.publish_dir, backbone.device)
        mounts.extend(device.mounts)
        environment.update(device.environment)
        if self.config.backbone_sharing:
            # Its own channel's folder only: it cannot reach the control socket or another
            # container's channel.
            environment["LORAFAAS_ATTACH_SOCKET"] = f"{ATTACH_TARGET}/{CHANNEL_SOCKET_NAME}"
            mounts.append(Mount(folders.attach, ATTACH_TARGET))
        else:
            environment["LORAFAAS_BACKBONE_SHARING"] = "off"
        return ContainerSpec(
            name=name, image=self.config.image, memory_mb=memory_mb,
            pids_limit=self.config.pids_limit,
            labels={LABEL_INVOKER: self.config.invoker_id,
                    LABEL_ACTION: function.path if function else STEM_LABEL},
            environment=environment, mounts=mounts, gpu=device.gpu)

    # --- attach channels -----------------------------------------------------------------

    async def _open_channel(self, folders: ContainerFolders, backbone: str) -> None:
        # backbone "": a code action's container, which has no channel.
        if self.config.backbone_sharing and backbone:
            await self.channels[backbone].open(folders.channel, folders.attach_socket)

    async def _close_channel(self, folders: ContainerFolders, backbone: str) -> None:
        # A server that is down has no channel to close; its successor opens only live ones.
        if not self.config.backbone_sharing or not backbone:
            return
        try:
            await self.channels[backbone].close(folders.channel)
        except ChannelUnavailable as error:
            logger.warning("channel %s not closed: %s", folders.channel, error)

    async def ensure_channels(self) -> int:
        """Open again the channels of live containers that a (restarted) backbone server
        lacks; return how many were opened."""
        if not self.config.backbone_sharing:
            return 0
        opened = 0
        for name, channels in self.channels.items():
            live = {c.folders.channel: c for c in self._containers.values() if c.backbone == name}
            if self.backbones[name].transport == CUDA_IPC:
                # Their CUDA IPC memory went with the server: replaced, never re-attached.
                await self._replace_orphaned(channels, live)
                continue
            try:
                reopened = await channels.open_missing(
                    {key: c.folders.attach_socket for key, c in live.items()})
            except ChannelUnavailable as error:
                logger.warning("channels of backbone %s not checked: %s", name, error)
                continue
            opened += len(reopened)
            for key in reopened:
                logger.info("channel of container %s opened again", live[key].info.name)
                if live[key].info.id not in self._containers:  # removed meanwhile
                    await self._close_channel(live[key].folders, name)
        return opened

    async def _replace_orphaned(self, channels: AttachChannels,
                                live: dict[str, PooledContainer]) -> None:
        try:
            missing = set(live) - await channels.open_ids()
        except ChannelUnavailable as error:
            logger.warning("channels not checked: %s", error)
            return
        for key in sorted(missing):
            container = live[key]
            if container.state is ContainerState.STARTING:
                continue  # its attach fails, or the next round finds it started
            if container.state is ContainerState.BUSY:
                self._doomed.add(container.info.id)  # removed as soon as its work ends
            else:
                await self.discard(container, "backbone server restarted (CUDA IPC)")

    # --- giving back and removing --------------------------------------------------------

    async def release(self, container: PooledContainer) -> None:
        """The activation is done; the container stays warm for the next one (unless its
        action changed meanwhile)."""
        if container.info.id in self._doomed:
            await self.discard(container, "action changed")
            return
        async with self._changed:
            container.state = ContainerState.IDLE
            container.last_used = time.monotonic()
            container.uses += 1
            self._changed.notify_all()
        if self.offloader is not None:
            await self.offloader.released(container)

    async def discard(self, container: PooledContainer, reason: str) -> None:
        """Remove a container that failed or is no longer wanted."""
        self._containers.pop(container.info.id, None)
        await self._remove_all([container], reason)

    async def _remove_all(self, containers: list[PooledContainer], reason: str) -> None:
        for container in containers:
            logger.info("removing container %s: %s", container.info.name, reason)
            if reason != SHUTDOWN:
                self.evictions.record(container, reason)
            self._doomed.discard(container.info.id)
            await container.client.close()
            await asyncio.to_thread(self.backend.remove, container.info.id)
            await self._close_channel(container.folders, container.backbone)
            container.folders.remove()
            if self.offloader is not None:
                await self.offloader.removed(container)
        async with self._changed:
            self._changed.notify_all()

    async def remove_idle(self, predicate: Callable[[PooledContainer], bool],
                          reason: str) -> int:
        """Remove the idle containers `predicate` picks; return how many."""
        async with self._changed:
            chosen = [c for c in self._containers.values() if c.evictable and predicate(c)]
            for container in chosen:
                del self._containers[container.info.id]
        await self._remove_all(chosen, reason)
        return len(chosen)

    async def remove_function(self, function_path: str) -> None:
        """Remove the containers of an action (it was deleted or updated): idle ones now, busy
        or starting ones when their activation ends or their start returns."""
        self._retirements[function_path] += 1
        self._doomed |= {c.info.id for c in self._containers.values()
                         if c.function_path == function_path and not c.evictable}
        await self.remove_idle(lambda c: c.function_path == function_path, "action changed")

    async def remove_orphans(self) -> int:
        """Remove containers a previous run of this invoker left behind (after a crash)."""
        orphans = await asyncio.to_thread(self.backend.list_labelled, self.config.invoker_id)
        orphans = [o for o in orphans if o not in self._containers]
        for container_id in orphans:
            await asyncio.to_thread(self.backend.remove, container_id)
        if orphans:
            logger.info("removed %d orphan containers", len(orphans))
        return len(orphans)

    async def shutdown(self) -> None:
        """Remove every container, and any whose start was cut short (it has our label)."""
        containers = list(self._containers.values())
        self._containers.clear()
        await self._remove_all(containers, SHUTDOWN)
        await self.remove_orphans()

    async def check_alive(self, container: PooledContainer) -> tuple[int | None, bool]:
        """Exit code and OOM flag of a container (None while it runs)."""
        return await asyncio.to_thread(self.backend.exit_status, container.info.id)

    async def health_check(self) -> int:
        """Remove idle containers whose runtime no longer answers; return how many."""
        sick = []
        for container in [c for c in self._containers.values() if c.evictable]:
            if not await container.client.healthy():
                sick.append(container.info.id)
        return await self.remove_idle(lambda c: c.info.id in sick, "failed its health check")


def pick_victims(containers: Iterable[PooledContainer], needed_mb: int,
                 order: Sequence[ContainerState]) -> list[PooledContainer] | None:
    """Idle containers in the states of `order` whose memory adds up to `needed_mb`: by
    state in that order, least recently used first within a state; None if they cannot."""
    rank = {state: i for i, state in enumerate(order)}
    idle = sorted((c for c in containers if c.state in rank),
                  key=lambda c: (rank[c.state], c.last_used))
    chosen, freed = [], 0
    for container in idle:
        if freed >= needed_mb:
            break
        chosen.append(container)
        freed += container.memory_mb
    return chosen if freed >= needed_mb else None


# (its root folder, the namespace container's FunctionRef, its backbone): its created
# folders and spec.
NamespaceStart = Callable[[Path, FunctionRef, BackboneMounts],
                          tuple[ContainerFolders, ContainerSpec]]


@dataclass(frozen=True)
class _Started:
    pooled: PooledContainer
    init_breakdown: dict[str, float]
    init_memory: dict[str, int]


class _Once:
    """Calls an optional callback the first time only."""

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self._callback = callback

    def __call__(self) -> None:
        if self._callback is not None:
            callback, self._callback = self._callback, None
            callback()
