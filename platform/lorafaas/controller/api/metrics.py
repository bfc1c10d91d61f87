"""The invoker's Prometheus metrics (`GET /metrics`), for keys of an admin namespace.

The metrics name every namespace's functions, so they are not public: Prometheus scrapes
with `basic_auth` set to the uuid and key of a namespace in LORAFAAS_ADMIN_NAMESPACES.
"""

from __future__ import annotations

import time
from collections import Counter

from aiohttp import web

from lorafaas.controller.appkeys import invocations_key, pool_key, settings_key
from lorafaas.controller.auth import identify
from lorafaas.errors import Forbidden
from lorafaas.invoker.metrics import CONTENT_TYPE, Gauges, render


async def prometheus_metrics(request: web.Request) -> web.Response:
    """Queue lengths, batches running (M), batch sizes, SLO attainment, containers,
    backbone servers up and restarted."""
    identity = await identify(request)
    if identity.namespace not in request.app[settings_key].admin_namespaces:
        raise Forbidden("Only keys of an admin namespace (LORAFAAS_ADMIN_NAMESPACES) may read "
                        "the invoker's metrics.")
    invoker = request.app[invocations_key].invoker
    dispatcher = invoker.dispatcher
    pool = request.app[pool_key]
    states = Counter(c.state.value for c in pool.containers())
    backoff, now = pool.stem_backoff, time.time()
    gauges = Gauges(queue_lengths=dispatcher.queue_lengths(),
                    batches_running=dispatcher.running,
                    max_concurrent_batches=dispatcher.config.max_concurrent,
                    containers=states,
                    stem_failures={b: s.total for b, s in backoff.states.items()},
                    stem_backoff_s={b: backoff.waiting_s(b, now) for b in backoff.states},
                    backbones_up={b: s.up for b, s in pool.health.states.items()},
                    backbone_restarts={b: s.restarts for b, s in pool.health.states.items()})
    return web.Response(body=render(invoker.metrics, gauges).encode(),
                        headers={"Content-Type": CONTENT_TYPE})
