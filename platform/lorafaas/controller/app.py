"""Wiring of the single-machine platform: controller, invoker and a backbone server per
configured backbone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.billing.ledger import IdleMeter
from lorafaas.billing.prices import price_sheet
from lorafaas.console import setup_console
from lorafaas.controller.action_service import ActionService
from lorafaas.controller.appkeys import (
    actions_key,
    backbones_key,
    invocations_key,
    login_throttle_key,
    pool_key,
    prefill_key,
    served_backbones_key,
    sessions_key,
    settings_key,
    tracker_key,
)
from lorafaas.controller.backbone_servers import backbone_server
from lorafaas.controller.backbones import Backbone, BackboneCatalog, ServedBackbone
from lorafaas.controller.context_length import ContextCheck
from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.login_throttle import LoginThrottle
from lorafaas.controller.middleware import (
    error_middleware,
    error_renderers_key,
    openai_error_response,
)
from lorafaas.controller.openai_errors import openai_error_middleware
from lorafaas.controller.openapi import OPENAPI_PATH, openapi_handler
from lorafaas.controller.prefill import open_prefill_profiling
from lorafaas.controller.routes import api_routes
from lorafaas.controller.throttle import InvocationThrottle, NamespaceLimits
from lorafaas.invoker.backend import ContainerBackend
from lorafaas.invoker.batching import PrefillModel
from lorafaas.invoker.dispatcher import BatchingConfig
from lorafaas.invoker.invoker import Invoker
from lorafaas.invoker.keepalive import KeepAliveConfig, KeepAlivePolicy
from lorafaas.invoker.maintenance import FunctionTracker, Maintenance
from lorafaas.invoker.offloading import MB, AcceleratorMemory, Offloader, OffloadPolicy
from lorafaas.invoker.pool import BackboneMounts, ContainerPool, PoolConfig
from lorafaas.invoker.prewarm import PrewarmConfig
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.profiles import all_estimates
from lorafaas.settings import Settings

logger = logging.getLogger(__name__)

BackendFactory = Callable[[], ContainerBackend]


def docker_backend_factory() -> ContainerBackend:
    """The real Docker engine (imported lazily so the controller starts without it)."""
    from lorafaas.invoker.docker_backend import DockerBackend

    return DockerBackend()


def create_app(settings: Settings, backend_factory: BackendFactory = docker_backend_factory
               ) -> web.Application:
    """The platform's aiohttp application; resources are acquired in cleanup contexts."""
    app = web.Application(middlewares=[error_middleware, openai_error_middleware],
                          client_max_size=settings.max_adapter_bytes * 4 // 3 + 65536)
    app[settings_key] = settings
    app[served_backbones_key] = {}
    for spec in settings.backbone_specs:  # one context per server: each stops on its own
        app.cleanup_ctx.append(backbone_server(settings, spec))
    app.cleanup_ctx.append(_platform(settings, backend_factory))
    app.cleanup_ctx.append(_idle_metering(settings))
    _setup_http(app, settings)
    setup_console(app, settings)
    return app


def _setup_http(app: web.Application, settings: Settings) -> None:
    """The API's routes, the shapes of its errors by path, and the failed-sign-in limits."""
    app.add_routes(_routes())
    # /v1 answers in OpenAI's error shape; the OpenAI module may register its own renderer.
    app[error_renderers_key] = (("/v1/", openai_error_response),)
    app[login_throttle_key] = LoginThrottle(settings.login_failures_burst,
                                            settings.login_failures_per_minute)


def _idle_metering(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    # After the platform's context: it stops first, while the pool and registry still run.
    async def idle_metering(app: web.Application) -> AsyncIterator[None]:
        meter = IdleMeter(app[pool_key].containers, app[sessions_key], price_sheet(settings))
        async with meter.running():
            yield
    return idle_metering


def _routes() -> list[web.AbstractRouteDef]:
    routes = api_routes()
    definitions: list[web.AbstractRouteDef] = [web.route(r.method, r.path, r.handler)
                                               for r in routes]
    return [*definitions, web.get(OPENAPI_PATH, openapi_handler(routes))]


def _platform(settings: Settings, backend_factory: BackendFactory
              ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def platform(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        served = [app[served_backbones_key][spec.name] for spec in settings.backbone_specs]
        app[backbones_key] = await asyncio.to_thread(_catalog, served)
        pool = ContainerPool(backend_factory(), _pool_config(settings), _mounts(served))
        tracker = FunctionTracker(KeepAlivePolicy(KeepAliveConfig(
            fixed_keepalive_s=settings.keepalive_fixed_s,
            policy="fixed" if settings.keepalive_policy == "fixed" else "histogram")))
        pool.offloader = _offloader(settings, tracker)
        tasks: set[asyncio.Task[Any]] = set()
        maintenance: asyncio.Task[None] | None = None
        # The invoker's batch dispatcher loop, and the worker that profiles prefill times.
        dispatching = contextlib.AsyncExitStack()
        try:
            await pool.remove_orphans()
            sessions = make_sessions(engine)
            await _services(app, settings, sessions, pool, tracker, tasks)
            # Plan pre-loading with the artifact profiles measured before this start.
            async with sessions() as session:
                tracker.profiles.seed(await all_estimates(session))
            await dispatching.enter_async_context(
                app[invocations_key].invoker.dispatcher.running_loop())
            await dispatching.enter_async_context(app[prefill_key].running())
            # Activations accepted before the last stop (or crash) and never recorded.
            await app[invocations_key].resume_pending()
            maintenance = asyncio.create_task(_maintenance(settings, pool, tracker).run())
            yield
        finally:
            if maintenance is not None:
                maintenance.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await maintenance
            await _finish(tasks)
            await dispatching.aclose()  # after the activations, which wait for their batches
            await pool.shutdown()
            await engine.dispose()
    return platform


async def _services(app: web.Application, settings: Settings,
                    sessions: async_sessionmaker[AsyncSession], pool: ContainerPool,
                    tracker: FunctionTracker, tasks: set[asyncio.Task[Any]]) -> None:
    store = ArtifactStore(settings.artifacts_dir)
    catalog = app[backbones_key]
    throttle = InvocationThrottle(NamespaceLimits(settings.invocations_per_minute,
                                                  settings.concurrent_invocations))
    app[sessions_key] = sessions
    app[pool_key] = pool
    app[tracker_key] = tracker
    invoker = Invoker(pool, tracker, _batching(settings))
    prefill = await open_prefill_profiling(settings, pool.backend, sessions,
                                           invoker.dispatcher)
    app[prefill_key] = prefill
    app[actions_key] = ActionService(sessions, store, catalog, settings.max_adapter_bytes,
                                     settings.action_history, prefill=prefill,
                                     max_uploads=settings.max_concurrent_uploads)
    specs = settings.backbone_specs
    context = ContextCheck({s.name: settings.shm_dir / s.name for s in specs},
                           {s.name: s.folder for s in specs})
    app[invocations_key] = InvocationService(sessions, store, invoker, throttle, tasks,
                                             prices=price_sheet(settings), prefill=prefill,
                                             context=context)


def _maintenance(settings: Settings, pool: ContainerPool,
                 tracker: FunctionTracker) -> Maintenance:
    prewarm = PrewarmConfig(min_count=min(settings.prewarm_min, settings.prewarm_max),
                            max_count=settings.prewarm_max, ttl_s=settings.prewarm_ttl_s)
    return Maintenance(pool, tracker, prewarm, settings.maintenance_period_s,
                       preloading=settings.preloading,
                       spare_share=settings.preload_spare_share)


def _offloader(settings: Settings, tracker: FunctionTracker) -> Offloader | None:
    if settings.accelerator_memory_mb == 0:
        return None  # unlimited: nothing to keep within a budget

    def rate_of(function_key: str) -> float:
        stats = tracker.stats.get(function_key)
        return stats.rate_per_s(time.time()) if stats is not None else 0.0

    return Offloader(OffloadPolicy(settings.offload_policy),
                     AcceleratorMemory(settings.accelerator_memory_mb * MB), rate_of)


def _batching(settings: Settings) -> BatchingConfig:
    return BatchingConfig(enabled=settings.batching != "off",
                          eager=settings.batching == "eager",
                          continuous=settings.batching == "continuous",
                          max_batch_size=settings.max_batch_size,
                          max_concurrent=settings.max_concurrent_batches,
                          default_slo_ms=settings.slo_ttft_ms,
                          default_model=PrefillModel(settings.prefill_t0_ms,
                                                     settings.prefill_alpha_ms))


def _catalog(served: list[ServedBackbone]) -> BackboneCatalog:
    # Reads each checkpoint's config and tensor headers: what adapters are checked against.
    return BackboneCatalog(Backbone.read(s.spec, s.published, default=i == 0)
                           for i, s in enumerate(served))


def _mounts(served: list[ServedBackbone]) -> dict[str, BackboneMounts]:
    return {s.spec.name: BackboneMounts(s.endpoint.socket_path, s.endpoint.publish_dir)
            for s in served}


def _pool_config(settings: Settings) -> PoolConfig:
    return PoolConfig(invoker_id=settings.invoker_id, image=settings.runtime_image,
                      run_dir=settings.run_dir, pids_limit=settings.container_pids_limit,
                      start_timeout_s=settings.container_start_timeout_s,
                      max_instances=settings.max_instances,
                      memory_mb=settings.pool_memory_mb,
                      stem_memory_mb=settings.container_memory_mb,
                      backbone_sharing=settings.backbone_sharing,
                      generation_defaults=settings.generation_defaults,
                      torch_threads=settings.container_torch_threads)


async def _finish(tasks: set[asyncio.Task[Any]]) -> None:
    # Let running activations end (their records are written), within a bound.
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
