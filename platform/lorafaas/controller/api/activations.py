"""The activations resource: list, get, logs, result."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lorafaas.controller.api.params import activation_id, epoch_ms, flag, paging
from lorafaas.controller.appkeys import invocations_key, sessions_key
from lorafaas.controller.auth import namespace_of
from lorafaas.errors import BadRequest
from lorafaas.registry.activations import (
    activation_json,
    count_by_path,
    get_activation,
    list_by_path,
)
from lorafaas.registry.models import Activation

DOCS_WITH_COUNT = "The parameter 'docs' is not permitted with 'count'."  # OpenWhisk's words


async def list_activation_records(request: web.Request) -> web.Response:
    """The namespace's activations, newest first (`name`: `action` or `pkg/action`;
    `limit`, `skip`, `since`, `upto`).

    As OpenWhisk: summaries without response and logs, full records with `docs=true`, and
    `{"activations": N}` with `count=true` (which refuses `docs`).
    """
    identity = await namespace_of(request)
    limit, skip = paging(request)
    since, upto, docs = epoch_ms(request, "since"), epoch_ms(request, "upto"), flag(request, "docs")
    await request.app[invocations_key].settled(identity.namespace)  # records just answered
    name = request.query.get("name")
    if flag(request, "count"):
        if docs:
            raise BadRequest(DOCS_WITH_COUNT, param="docs")
        async with request.app[sessions_key]() as session:
            count = await count_by_path(session, identity.namespace, name, skip,
                                        since=since, upto=upto)
        return web.json_response({"activations": count})
    async with request.app[sessions_key]() as session:
        rows = await list_by_path(session, identity.namespace, name, limit, skip,
                                  since=since, upto=upto)
    records = [activation_json(row) for row in rows]
    if not docs:
        records = [_summary(record) for record in records]
    return web.json_response(records)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    summary = {k: v for k, v in record.items() if k not in ("response", "logs")}
    summary["statusCode"] = record["response"]["statusCode"]
    return summary


async def _activation(request: web.Request) -> Activation:
    identity = await namespace_of(request)
    activation = activation_id(request)
    await request.app[invocations_key].settled(identity.namespace, activation)
    async with request.app[sessions_key]() as session:
        return await get_activation(session, identity.namespace, activation)


async def get_activation_record(request: web.Request) -> web.Response:
    """One activation record."""
    return web.json_response(activation_json(await _activation(request)))


async def get_activation_logs(request: web.Request) -> web.Response:
    """An activation's logs."""
    return web.json_response({"logs": (await _activation(request)).logs})


async def get_activation_result(request: web.Request) -> web.Response:
    """An activation's response."""
    return web.json_response((await _activation(request)).response)
