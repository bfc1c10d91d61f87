"""The in-process invoker behind the seam (`lorafaas.invoking.client.InvokerClient`): this
machine's container pool, function tracker, batch dispatcher, prefill profiling and
maintenance loop, built from the settings and run in the controller's process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.backbone.health import BackboneHealth
from lorafaas.background import running_in_background
from lorafaas.invoker.backend import ContainerBackend
from lorafaas.invoker.batching import PrefillModel
from lorafaas.invoker.containers import PooledContainer
from lorafaas.invoker.device_budget import accelerator_budget_bytes, measured_free
from lorafaas.invoker.dispatcher import BatchingConfig
from lorafaas.invoker.invoker import Invoker
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.metrics import CONTENT_TYPE, Gauges, render
from lorafaas.invoker.offloading import AcceleratorMemory, Offloader, OffloadPolicy
from lorafaas.invoker.placement import PlacementConfig, SharedContainers
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig
from lorafaas.invoker.prefill_profiling import PrefillProfiling, open_prefill_profiling
from lorafaas.invoker.prewarm import PrewarmConfig
from lorafaas.invoker.sharing import (
    NAMESPACE_CONTAINER,
    NamespaceSharing,
    SharingConfig,
    container_kind,
)
from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    DeltaSink,
    FunctionRef,
)
from lorafaas.invoking.client import FunctionView, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName
from lorafaas.registry.profiles import all_estimates
from lorafaas.settings import Settings, SettingsError


class LocalInvoker:
    """The invoker in the controller's process: one implementation of `InvokerClient`."""

    def __init__(self, pool: ContainerPool, tracker: FunctionTracker, runner: Invoker,
                 prefill: PrefillProfiling, maintenance: Maintenance) -> None:
        self.pool = pool
        self.tracker = tracker
        self.runner = runner  # queues activations for their batches and builds the results
        self.prefill = prefill
        self.maintenance = maintenance

    async def run(self, request: ActivationRequest,
                  on_delta: DeltaSink | None = None) -> ActivationResult:
        """Run the activation in its batch (see `Invoker.run`)."""
        # Before the request reaches the dispatcher's queue: sizes its batch by its T(b).
        self.prefill.function_used(request.function)
        return await self.runner.run(request, on_delta)

    async def retire(self, name: QualifiedName) -> None:
        """Remove the action's containers and forget what was seen of it."""
        await self.runner.retire(str(name))

    def prepare(self, function: FunctionRef) -> None:
        """Apply the function's prefill fit, or queue its rank for profiling."""
        self.prefill.function_used(function)

    def describe_function(self, function: FunctionRef) -> FunctionView:
        """The function's containers, keep-alive decision and prefill model."""
        decision = self.tracker.decision(function.key)
        return FunctionView(
            instances=self.pool.instances(function.path) + self._shared_instances(function),
            keep_alive={"policy": decision.policy, "reason": decision.reason,
                        "prewarmWindowSeconds": decision.prewarm_window_s,
                        "keepAliveSeconds": decision.keepalive_s},
            prefill_model=self.prefill.describe(function))

    def _shared_instances(self, function: FunctionRef) -> list[dict[str, object]]:
        """The namespace container the function's requests go to, if it has one running:
        without it, a function on the shared path would show no instance at all."""
        sharing = self.runner.sharing
        ref = None if sharing is None else sharing.shared_ref(function)
        container = None if sharing is None or ref is None else sharing.container_of(ref)
        if sharing is None or container is None:
            return []
        return [{**container.describe(), "kind": container_kind(container),
                 "adapterLoaded": function.key in sharing.holds(container)}]

    def snapshot(self) -> InvokerSnapshot:
        """Every pooled container as the console shows it, and the pool's size."""
        return InvokerSnapshot([self._view(c) for c in self.pool.containers()],
                               self.pool.config.memory_mb, self.pool.evictions.recent())

    def _view(self, container: PooledContainer) -> dict[str, Any]:
        # A namespace container lists the functions whose adapters it holds: the console
        # shows them warm, and remote placement weighs them.
        view = container_view(container)
        sharing = self.runner.sharing
        if sharing is not None and view["kind"] == NAMESPACE_CONTAINER:
            view["functions"] = sorted({key.split("@")[0] for key in sharing.holds(container)})
        return view

    def metrics(self) -> MetricsText:
        """The dispatcher's, the pool's and the activations' metrics, rendered."""
        dispatcher, pool = self.runner.dispatcher, self.pool
        states = Counter(c.state.value for c in pool.containers())
        backoff, now = pool.stem_backoff, time.time()
        gauges = Gauges(queue_lengths=dispatcher.queue_lengths(),
                        batches_running=dispatcher.running,
                        max_concurrent_batches=dispatcher.config.max_concurrent,
                        containers=states,
                        stem_failures={b: s.total for b, s in backoff.states.items()},
                        stem_backoff_s={b: backoff.waiting_s(b, now) for b in backoff.states},
                        backbones_up={b: s.up for b, s in pool.health.states.items()},
                        backbone_restarts={b: s.restarts for b, s in pool.health.states.items()},
                        namespace_steps=shared.steps if (shared := self.runner.sharing)
                        else {})
        return MetricsText(render(self.runner.metrics, gauges), CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the batch dispatcher's loop and the worker that profiles prefill times."""
        async with self.runner.dispatcher.running_loop(), self.prefill.running():
            yield

    @contextlib.asynccontextmanager
    async def maintaining(self) -> AsyncIterator[None]:
        """Run the maintenance loop (keep-alive, stem cells, pre-loading) until exit."""
        loops = [self.maintenance.run()]
        if self.runner.sharing is not None:  # /metrics' step composition
            loops.append(self._read_steps(self.runner.sharing))
        async with running_in_background(*loops):
            yield

    async def _read_steps(self, sharing: NamespaceSharing) -> None:
        """Read the namespace containers' step composition every maintenance period."""
        while True:
            await sharing.refresh_steps()
            await asyncio.sleep(self.maintenance.period_s)


def container_view(container: PooledContainer) -> dict[str, Any]:
    """A container as the console shows it: its description, function, kind (function or
    namespace container, which remote placement weighs) and host pid."""
    view: dict[str, Any] = dict(container.describe())
    view["kind"] = container_kind(container)
    view["pid"] = int(container.info.pid or 0)  # on the host, for its memory
    view["function"] = container.function_path or (container.function_key or "").split("@")[0]
    return view


@contextlib.asynccontextmanager
async def local_invoker(settings: Settings, backend: ContainerBackend,
                        mounts: Mapping[str, BackboneMounts],
                        sessions: async_sessionmaker[AsyncSession],
                        health: BackboneHealth | None = None) -> AsyncIterator[LocalInvoker]:
    """The in-process invoker with orphans removed and the measured profiles loaded; its
    containers are removed on exit. `health`: which backbones' servers are up."""
    pool = ContainerPool(backend, pool_config(settings), dict(mounts), health=health)
    tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig(
        fixed_keepalive_s=settings.keepalive_fixed_s,
        policy="fixed" if settings.keepalive_policy == "fixed" else "histogram")))
    pool.offloader = offloader(settings, tracker,
                               measured_free(m.device_free_bytes for m in mounts.values()))
    try:
        await pool.remove_orphans()
        runner = Invoker(pool, tracker, batching(settings), sharing(settings))
        prefill = await open_prefill_profiling(settings, pool.backend, sessions,
                                               runner.dispatcher)
        # Plan pre-loading with the artifact profiles measured before this start.
        async with sessions() as session:
            tracker.profiles.seed(await all_estimates(session))
        yield LocalInvoker(pool, tracker, runner, prefill,
                           maintenance(settings, pool, tracker, runner.sharing))
    finally:
        await pool.shutdown()


def maintenance(settings: Settings, pool: ContainerPool, tracker: FunctionTracker,
                sharing: NamespaceSharing | None = None) -> Maintenance:
    """The maintenance loop the settings ask for (with `sharing`: namespace containers)."""
    prewarm = PrewarmConfig(min_count=min(settings.prewarm_min, settings.prewarm_max),
                            max_count=settings.prewarm_max, ttl_s=settings.prewarm_ttl_s)
    return Maintenance(pool, tracker, prewarm, settings.maintenance_period_s,
                       preloading=settings.preloading,
                       spare_share=settings.preload_spare_share, sharing=sharing)


def offloader(settings: Settings, tracker: FunctionTracker,
              device_free: int | None = None) -> Offloader | None:
    """The offloader within the accelerator's memory budget, measured from the device
    where one was (`device_free`), else configured (None: unlimited)."""
    budget = accelerator_budget_bytes(settings.accelerator_memory_mb, device_free)
    if budget == 0:
        return None  # unlimited: nothing to keep within a budget

    def rate_of(function_key: str) -> float:
        stats = tracker.stats.get(function_key)
        return stats.rate_per_s(time.time()) if stats is not None else 0.0

    return Offloader(OffloadPolicy(settings.offload_policy),
                     AcceleratorMemory(budget), rate_of)


def batching(settings: Settings) -> BatchingConfig:
    """The dispatcher's batching as the settings ask for it."""
    return BatchingConfig(enabled=settings.batching != "off",
                          eager=settings.batching == "eager",
                          continuous=settings.batching == "continuous",
                          max_batch_size=settings.max_batch_size,
                          max_concurrent=settings.max_concurrent_batches,
                          default_slo_ms=settings.slo_ttft_ms,
                          default_model=PrefillModel(settings.prefill_t0_ms,
                                                     settings.prefill_alpha_ms))


def sharing(settings: Settings) -> SharingConfig:
    """Namespace containers as the settings ask for them."""
    try:
        # fill_window_s stays 1: the thresholds are then requests a second.
        placement = PlacementConfig(mode=SharedContainers(settings.shared_containers),
                                    own_at=settings.shared_own_at,
                                    share_at=settings.shared_share_at,
                                    dwell_s=settings.shared_dwell_s,
                                    rate_tau_s=settings.shared_rate_tau_s)
    except ValueError as error:
        raise SettingsError(f"LORAFAAS_SHARED_SHARE_AT and LORAFAAS_SHARED_OWN_AT: "
                            f"{error}") from error
    return SharingConfig(placement, memory_mb=settings.namespace_memory_mb,
                         adapter_budget_mb=settings.namespace_adapter_budget_mb)


def pool_config(settings: Settings) -> PoolConfig:
    """The container pool's configuration from the settings."""
    return PoolConfig(invoker_id=settings.invoker_id, image=settings.runtime_image,
                      run_dir=settings.run_dir, pids_limit=settings.container_pids_limit,
                      start_timeout_s=settings.container_start_timeout_s,
                      max_instances=settings.max_instances,
                      memory_mb=settings.pool_memory_mb,
                      stem_memory_mb=settings.container_memory_mb,
                      backbone_sharing=settings.backbone_sharing,
                      generation_defaults=settings.generation_defaults,
                      torch_threads=settings.container_torch_threads)
