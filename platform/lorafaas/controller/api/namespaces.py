"""The namespaces resource: the caller's namespaces and their limits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lorafaas.controller.appkeys import invocations_key, settings_key
from lorafaas.controller.auth import identify, namespace_of
from lorafaas.controller.protocol import limit_ranges
from lorafaas.settings import Settings


async def list_namespaces(request: web.Request) -> web.Response:
    """The namespaces the caller's key can use (as OpenWhisk: one, its own)."""
    identity = await identify(request)
    return web.json_response([identity.namespace])


async def get_limits(request: web.Request) -> web.Response:
    """The namespace's limits as OpenWhisk's `UserLimits`, and how many of its activations
    are in flight."""
    identity = await namespace_of(request)
    throttle = request.app[invocations_key].throttle
    return web.json_response({**throttle.limits.as_json(),
                              **action_limit_ranges(request.app[settings_key]),
                              "inFlight": throttle.in_flight(identity.namespace)})


def action_limit_ranges(settings: Settings) -> dict[str, Any]:
    """The ranges an action's limits may take, in OpenWhisk's field names and units (MB,
    milliseconds); triggers are not served, so `firesPerMinute` is the invocation rate."""
    ranges = limit_ranges(settings.action_timeout_ms, settings.container_memory_mb,
                          settings.slo_ttft_ms)
    fields: dict[str, Any] = {"firesPerMinute": settings.invocations_per_minute}
    for field, limit in (("Memory", "memory"), ("Logs", "logs"), ("Timeout", "timeout"),
                         ("Concurrency", "concurrency")):
        fields[f"minAction{field}"] = ranges[limit].low
        fields[f"maxAction{field}"] = ranges[limit].high
    return fields
