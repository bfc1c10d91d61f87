"""The rules resource: PUT, GET, DELETE, list, and POST to enable or disable."""

from __future__ import annotations

from aiohttp import web

from lorafaas.controller.api.params import entity_name, flag, paging, read_json
from lorafaas.controller.appkeys import rules_key, sessions_key
from lorafaas.controller.auth import namespace_of
from lorafaas.controller.trigger_protocol import parse_status
from lorafaas.registry import rules as rule_rows


async def put_rule(request: web.Request) -> web.Response:
    """Create a rule (active) from its trigger and action, or with ?overwrite=true update it."""
    identity = await namespace_of(request)
    name, overwrite = entity_name(request), flag(request, "overwrite")
    body = await read_json(request)
    return web.json_response(await request.app[rules_key].put(identity, name, body, overwrite))


async def get_rule(request: web.Request) -> web.Response:
    """One rule with its status."""
    identity = await namespace_of(request)
    return web.json_response(await request.app[rules_key].get(identity, entity_name(request)))


async def delete_rule(request: web.Request) -> web.Response:
    """Delete a rule."""
    identity = await namespace_of(request)
    return web.json_response(await request.app[rules_key].delete(identity,
                                                                 entity_name(request)))


async def set_rule_status(request: web.Request) -> web.Response:
    """Enable or disable: `{"status": "active" | "inactive"}`; 200 with the text `OK`."""
    identity = await namespace_of(request)
    name = entity_name(request)
    status = parse_status(await read_json(request))
    await request.app[rules_key].set_status(identity, name, status)
    # OpenWhisk's Rules.activate answers `complete(OK)`: the status's own text, not the rule.
    return web.Response(text="OK")


async def list_rules(request: web.Request) -> web.Response:
    """The namespace's rules with their status, or with ?count=true `{"rules": N}`."""
    identity = await namespace_of(request)
    limit, skip = paging(request)
    if flag(request, "count"):
        async with request.app[sessions_key]() as session:
            count = await rule_rows.count_rules(session, identity.namespace_id, skip)
        return web.json_response({"rules": count})
    return web.json_response(await request.app[rules_key].listing(identity, limit, skip))
