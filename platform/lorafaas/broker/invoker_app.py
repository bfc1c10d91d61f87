"""`lorafaas serve --role invoker`: this machine's container pool, its backbone servers and
the broker's invoker service, with no API; `/health` says whether it serves.

The same parts as the single-machine platform's invoker half (`controller.app`), in the
same order: the run directory's hold (which reclaims a dead run's servers; the pool removes
the containers labelled with this invoker's id), one context per backbone server, then the
invoker, served on the broker, with the idle meter of its containers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from lorafaas.backbone.health import BackboneHealth
from lorafaas.billing.ledger import IdleMeter
from lorafaas.billing.prices import price_sheet
from lorafaas.broker.connection import connected
from lorafaas.broker.service import InvokerService
from lorafaas.controller.appkeys import (
    backbone_health_key,
    served_backbones_key,
    settings_key,
)
from lorafaas.controller.backbone_servers import backbone_server, run_ownership
from lorafaas.invoker.backend import ContainerBackend
from lorafaas.invoker.local import local_invoker
from lorafaas.invoker.pool import BackboneMounts
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.settings import Settings

service_key = web.AppKey("invoker_service", InvokerService)


def create_invoker_app(settings: Settings, backend_factory: Callable[[], ContainerBackend]
                       ) -> web.Application:
    """The invoker role's application: its resources in cleanup contexts, `/health`."""
    app = web.Application()
    app[settings_key] = settings
    app[served_backbones_key] = {}
    app[backbone_health_key] = BackboneHealth()
    app.cleanup_ctx.append(run_ownership(settings))
    for spec in settings.backbone_specs:
        app.cleanup_ctx.append(backbone_server(settings, spec))
    app.cleanup_ctx.append(_served_invoker(settings, backend_factory))
    app.add_routes([web.get("/health", health)])
    return app


async def health(request: web.Request) -> web.Response:
    """200 with what this invoker runs while it serves on the broker; 503 before."""
    service = request.app.get(service_key)
    if service is None or service.stopping:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ok", "invoker": service.invoker_id,
                              "inflight": service.capacity.inflight,
                              "liveInvokers": service.live.live_ids()})


def _served_invoker(settings: Settings, backend_factory: Callable[[], ContainerBackend]
                    ) -> Callable[[web.Application], AsyncIterator[None]]:
    async def served_invoker(app: web.Application) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        served = [app[served_backbones_key][spec.name] for spec in settings.backbone_specs]
        mounts = {s.spec.name: BackboneMounts(s.endpoint.socket_path, s.endpoint.publish_dir)
                  for s in served}
        try:
            sessions = make_sessions(engine)
            async with local_invoker(settings, backend_factory(), mounts, sessions,
                                     app[backbone_health_key]) as invoker, \
                    connected(settings.broker_url, f"invoker-{settings.invoker_id}") as nc, \
                    invoker.running(), invoker.maintaining(), \
                    IdleMeter(invoker.pool.containers, sessions,
                              price_sheet(settings)).running():
                service = InvokerService(nc, invoker, settings.invoker_id)
                async with service.serving():
                    app[service_key] = service
                    yield
        finally:
            await engine.dispose()
    return served_invoker
