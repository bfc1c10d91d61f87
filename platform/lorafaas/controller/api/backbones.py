"""The backbones resource: what this deployment serves, for choosing an action's backbone."""

from __future__ import annotations

from aiohttp import web

from lorafaas.controller.appkeys import backbones_key
from lorafaas.controller.auth import identify


async def list_backbones(request: web.Request) -> web.Response:
    """Every backbone, the default first: name, default, model type, architecture, serving
    dtype, published bytes, parameters, context length."""
    await identify(request)
    return web.json_response([b.describe() for b in request.app[backbones_key].all()])
