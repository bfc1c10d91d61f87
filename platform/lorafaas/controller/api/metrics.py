"""The invoker's Prometheus metrics (`GET /metrics`), for keys of an admin namespace.

The metrics name every namespace's functions, so they are not public: Prometheus scrapes
with `basic_auth` set to the uuid and key of a namespace in LORAFAAS_ADMIN_NAMESPACES.
"""

from __future__ import annotations

from aiohttp import web

from lorafaas.controller.appkeys import invoker_key, settings_key
from lorafaas.controller.auth import identify
from lorafaas.errors import Forbidden


async def prometheus_metrics(request: web.Request) -> web.Response:
    """Queue lengths, batches running (M), batch sizes, SLO attainment, containers."""
    identity = await identify(request)
    if identity.namespace not in request.app[settings_key].admin_namespaces:
        raise Forbidden("Only keys of an admin namespace (LORAFAAS_ADMIN_NAMESPACES) may read "
                        "the invoker's metrics.")
    metrics = request.app[invoker_key].metrics()
    return web.Response(body=metrics.body.encode(), headers={"Content-Type": metrics.content_type})
