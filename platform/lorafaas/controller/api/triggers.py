"""The triggers resource: PUT, GET, DELETE, list (or count), and POST to fire."""

from __future__ import annotations

from aiohttp import web

from lorafaas.controller.api.params import entity_name, flag, json_object, paging, read_json
from lorafaas.controller.appkeys import sessions_key, triggers_key
from lorafaas.controller.auth import namespace_of
from lorafaas.controller.trigger_protocol import parse_trigger_put, trigger_json
from lorafaas.registry import triggers as trigger_rows

ACTIVATION_HEADER = "x-openwhisk-activation-id"


async def put_trigger(request: web.Request) -> web.Response:
    """Create (or with ?overwrite=true update, merging) a trigger; an alarm feed with it."""
    identity = await namespace_of(request)
    name, overwrite = entity_name(request), flag(request, "overwrite")
    put = parse_trigger_put(await read_json(request))
    body = await request.app[triggers_key].put(identity, name, put, overwrite)
    return web.json_response(body)


async def get_trigger(request: web.Request) -> web.Response:
    """One trigger, its linked rules, and its alarm's config when it has one."""
    identity = await namespace_of(request)
    return web.json_response(await request.app[triggers_key].get(identity,
                                                                 entity_name(request)))


async def delete_trigger(request: web.Request) -> web.Response:
    """Delete a trigger and its alarm (its rules stay, inactive)."""
    identity = await namespace_of(request)
    return web.json_response(await request.app[triggers_key].delete(identity,
                                                                    entity_name(request)))


async def list_triggers(request: web.Request) -> web.Response:
    """The namespace's triggers, or with ?count=true `{"triggers": N}`."""
    identity = await namespace_of(request)
    limit, skip = paging(request)
    async with request.app[sessions_key]() as session:
        if flag(request, "count"):
            count = await trigger_rows.count_triggers(session, identity.namespace_id, skip)
            return web.json_response({"triggers": count})
        rows = await trigger_rows.list_triggers(session, identity.namespace_id, limit, skip)
        bodies = [trigger_json(row, identity.namespace,
                               await trigger_rows.linked_rules(session, row.id))
                  for row in rows]
    return web.json_response(bodies)


async def fire_trigger(request: web.Request) -> web.Response:
    """Fire: 202 with the trigger's activation id, or 204 when no rule of it is active."""
    identity = await namespace_of(request)
    name = entity_name(request)
    payload = json_object(await read_json(request), "the payload")
    activation_id = await request.app[triggers_key].fire(identity, name, payload)
    if activation_id is None:
        return web.Response(status=204)
    return web.json_response({"activationId": activation_id}, status=202,
                             headers={ACTIVATION_HEADER: activation_id})

