"""The activations resource: list, get, logs, result."""

from __future__ import annotations

from aiohttp import web

from lorafaas.controller.api.params import paging
from lorafaas.controller.appkeys import sessions_key
from lorafaas.controller.auth import namespace_of
from lorafaas.registry.activations import activation_json, get_activation, list_activations


async def list_activation_records(request: web.Request) -> web.Response:
    """The namespace's activations, newest first (`name`, `limit`, `skip`)."""
    identity = await namespace_of(request)
    limit, skip = paging(request)
    async with request.app[sessions_key]() as session:
        rows = await list_activations(session, identity.namespace, request.query.get("name"),
                                      limit, skip)
    return web.json_response([activation_json(row) for row in rows])


async def get_activation_record(request: web.Request) -> web.Response:
    """One activation record."""
    identity = await namespace_of(request)
    async with request.app[sessions_key]() as session:
        row = await get_activation(session, identity.namespace, request.match_info["id"])
    return web.json_response(activation_json(row))


async def get_activation_logs(request: web.Request) -> web.Response:
    """An activation's logs."""
    identity = await namespace_of(request)
    async with request.app[sessions_key]() as session:
        row = await get_activation(session, identity.namespace, request.match_info["id"])
    return web.json_response({"logs": row.logs})


async def get_activation_result(request: web.Request) -> web.Response:
    """An activation's response."""
    identity = await namespace_of(request)
    async with request.app[sessions_key]() as session:
        row = await get_activation(session, identity.namespace, request.match_info["id"])
    return web.json_response(row.response)
