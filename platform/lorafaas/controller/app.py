"""Wiring of the platform: by default the single-machine one (controller, invoker and a
backbone server per configured backbone, in one process); in the multi-machine roles the
controller alone, reaching its invokers over the broker, or an invoker alone.

The one module of the controller that knows the invoker's insides: it builds the in-process
invoker (`LocalInvoker`) and hands it to the handlers as an `InvokerClient`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.backbone.health import BackboneHealth
from lorafaas.billing.ledger import IdleMeter
from lorafaas.billing.prices import price_sheet
from lorafaas.console import setup_console
from lorafaas.controller.action_service import ActionService
from lorafaas.controller.appkeys import (
    actions_key,
    backbone_health_key,
    backbones_key,
    invocations_key,
    invoker_key,
    login_throttle_key,
    served_backbones_key,
    sessions_key,
    settings_key,
)
from lorafaas.controller.backbone_servers import backbone_server, run_ownership
from lorafaas.controller.backbones import Backbone, BackboneCatalog, Published, ServedBackbone
from lorafaas.controller.context_length import ContextCheck
from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.login_throttle import LoginThrottle
from lorafaas.controller.middleware import (
    add_cors_headers,
    cors_middleware,
    error_middleware,
    error_renderers_key,
    openai_error_response,
)
from lorafaas.controller.openai_errors import openai_error_middleware
from lorafaas.controller.openapi import OPENAPI_PATH, openapi_handler
from lorafaas.controller.protocol import limit_ranges
from lorafaas.controller.routes import api_routes
from lorafaas.controller.throttle import InvocationThrottle, NamespaceLimits, SharedCounts
from lorafaas.controller.trigger_wiring import triggers_and_alarms
from lorafaas.invoker.backend import ContainerBackend
from lorafaas.invoker.local import LocalInvoker, local_invoker
from lorafaas.invoker.pool import BackboneMounts
from lorafaas.invoking.client import InvokerClient
from lorafaas.registry.artifacts import ArtifactStore
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.settings import Role, Settings

logger = logging.getLogger(__name__)

BackendFactory = Callable[[], ContainerBackend]
# The in-process invoker itself, for the wiring's own resources and for tests of its insides.
local_invoker_key = web.AppKey("local_invoker", LocalInvoker)


def docker_backend_factory() -> ContainerBackend:
    """The real Docker engine (imported lazily so the controller starts without it)."""
    from lorafaas.invoker.docker_backend import DockerBackend

    return DockerBackend()


def create_app(settings: Settings, backend_factory: BackendFactory = docker_backend_factory,
               role: Role = Role.ALL) -> web.Application:
    """The platform's aiohttp application; resources are acquired in cleanup contexts.

    `role`: everything in one process (the default, no broker), the controller alone (its
    invokers reached over the broker), or an invoker alone (no API: see broker.invoker_app).
    """
    if role is Role.INVOKER:
        from lorafaas.broker.invoker_app import create_invoker_app

        return create_invoker_app(settings, backend_factory)
    if role is Role.CONTROLLER:
        return _controller_app(settings)
    app = web.Application(middlewares=[cors_middleware, error_middleware,
                                       openai_error_middleware],
                          client_max_size=settings.max_adapter_bytes * 4 // 3 + 65536)
    app[settings_key] = settings
    app.on_response_prepare.append(add_cors_headers)
    app[served_backbones_key] = {}
    app[backbone_health_key] = BackboneHealth()
    app.cleanup_ctx.append(run_ownership(settings))  # first: reclaims what a dead run left
    for spec in settings.backbone_specs:  # one context per server: each stops on its own
        app.cleanup_ctx.append(backbone_server(settings, spec))
    app.cleanup_ctx.append(_platform(settings, backend_factory))
    app.cleanup_ctx.append(triggers_and_alarms)  # after the platform: it fires through it
    app.cleanup_ctx.append(_idle_metering(settings))
    _setup_http(app, settings)
    setup_console(app, settings)
    return app


def _controller_app(settings: Settings) -> web.Application:
    """The controller role: the API, console and triggers; no pool, no backbone server."""
    app = web.Application(middlewares=[cors_middleware, error_middleware,
                                       openai_error_middleware],
                          client_max_size=settings.max_adapter_bytes * 4 // 3 + 65536)
    app[settings_key] = settings
    app.on_response_prepare.append(add_cors_headers)
    app[served_backbones_key] = {}  # served on the invokers' machines
    app[backbone_health_key] = BackboneHealth()
    app.cleanup_ctx.append(_remote_platform(settings))
    app.cleanup_ctx.append(triggers_and_alarms)
    _setup_http(app, settings)
    setup_console(app, settings)
    return app


def _remote_platform(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    # The controller's half of `_platform`: the same services, on the broker's invokers.
    async def remote_platform(app: web.Application) -> AsyncIterator[None]:
        from lorafaas.broker.client import BrokerInvoker
        from lorafaas.broker.connection import connected
        from lorafaas.broker.throttles import SharedThrottle, throttle_bucket

        engine = make_engine(settings.database_url)
        app[backbones_key] = await asyncio.to_thread(_configured_catalog, settings)
        tasks: set[asyncio.Task[Any]] = set()
        try:
            async with connected(settings.broker_url, "controller") as nc, \
                    BrokerInvoker(nc).connected() as invoker:
                # The namespace throttles, counted across every controller on the broker.
                shared = SharedThrottle(await throttle_bucket(invoker.js), _limits(settings),
                                        invoker.client_id)
                _services(app, settings, make_sessions(engine), invoker, tasks, shared,
                          invoker.client_id)
                try:
                    # Of several controllers, each resumes those whose controller's lease
                    # ran out (the first to claim them).
                    # Each stamp writes this controller's count from what it runs.
                    service = app[invocations_key]
                    async with shared.stamping(service.throttle.in_flight), \
                            service.resuming():
                        yield
                finally:
                    await _finish(tasks)
        finally:
            await engine.dispose()
    return remote_platform


def _configured_catalog(settings: Settings) -> BackboneCatalog:
    # No server runs here: each backbone as configured (its dtype as the settings name it).
    return BackboneCatalog(Backbone.read(spec, Published(spec.dtype, 0), default=i == 0)
                           for i, spec in enumerate(settings.backbone_specs))


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
        meter = IdleMeter(app[local_invoker_key].pool.containers, app[sessions_key],
                          price_sheet(settings))
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
        tasks: set[asyncio.Task[Any]] = set()
        try:
            sessions = make_sessions(engine)
            async with local_invoker(settings, backend_factory(), _mounts(served), sessions,
                                     app[backbone_health_key]) as invoker:
                app[local_invoker_key] = invoker
                _services(app, settings, sessions, invoker, tasks)
                # The invoker's batch dispatcher loop, and the worker that profiles prefills.
                async with invoker.running():  # after the activations: they wait for batches
                    try:
                        # Activations accepted before the last stop (or crash), never recorded:
                        # all of them, this being the only controller.
                        await app[invocations_key].resume_pending(every=True)
                        async with invoker.maintaining():
                            yield
                    finally:
                        await _finish(tasks)
        finally:
            await engine.dispose()
    return platform


def _services(app: web.Application, settings: Settings,
              sessions: async_sessionmaker[AsyncSession], invoker: InvokerClient,
              tasks: set[asyncio.Task[Any]], shared: SharedCounts | None = None,
              controller_id: str | None = None) -> None:
    """The controller's services; `shared`: the throttles held across controllers, and
    `controller_id` the one of this controller among them."""
    store = ArtifactStore(settings.artifacts_dir)
    catalog = app[backbones_key]
    throttle = InvocationThrottle(_limits(settings))
    app[sessions_key] = sessions
    app[invoker_key] = invoker
    app[actions_key] = ActionService(sessions, store, catalog, settings.max_adapter_bytes,
                                     settings.action_history, invoker=invoker,
                                     max_uploads=settings.max_concurrent_uploads,
                                     ranges=limit_ranges(settings.action_timeout_ms,
                                                         settings.container_memory_mb,
                                                         settings.slo_ttft_ms))
    specs = settings.backbone_specs
    context = ContextCheck({s.name: settings.shm_dir / s.name for s in specs},
                           {s.name: s.folder for s in specs})
    app[invocations_key] = InvocationService(sessions, store, invoker, throttle, tasks,
                                             prices=price_sheet(settings), context=context,
                                             controller_id=controller_id, shared=shared)


def _limits(settings: Settings) -> NamespaceLimits:
    return NamespaceLimits(settings.invocations_per_minute, settings.concurrent_invocations)


def _catalog(served: list[ServedBackbone]) -> BackboneCatalog:
    # Reads each checkpoint's config and tensor headers: what adapters are checked against.
    return BackboneCatalog(Backbone.read(s.spec, s.published, default=i == 0)
                           for i, s in enumerate(served))


def _mounts(served: list[ServedBackbone]) -> dict[str, BackboneMounts]:
    return {s.spec.name: BackboneMounts(s.endpoint.socket_path, s.endpoint.publish_dir,
                                        s.published.transport, s.published.device,
                                        s.published.device_free_bytes)
            for s in served}


async def _finish(tasks: set[asyncio.Task[Any]]) -> None:
    # Let running activations end (their records are written), within a bound.
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
