"""The namespaces resource: the caller's namespaces and their limits."""

from __future__ import annotations

from aiohttp import web

from lorafaas.controller.appkeys import invocations_key
from lorafaas.controller.auth import identify, namespace_of


async def list_namespaces(request: web.Request) -> web.Response:
    """The namespaces the caller's key can use (as OpenWhisk: one, its own)."""
    identity = await identify(request)
    return web.json_response([identity.namespace])


async def get_limits(request: web.Request) -> web.Response:
    """The namespace's throttles and how many of its activations are in flight."""
    identity = await namespace_of(request)
    throttle = request.app[invocations_key].throttle
    return web.json_response({**throttle.limits.as_json(),
                              "inFlight": throttle.in_flight(identity.namespace)})
