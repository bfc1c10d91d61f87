"""The packages resource: PUT, GET (with its actions), DELETE and list, as OpenWhisk's."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.controller.api.params import entity_name, flag, paging, read_json
from lorafaas.controller.appkeys import sessions_key
from lorafaas.controller.auth import namespace_of
from lorafaas.controller.package_protocol import (
    package_action_json,
    package_json,
    parse_package_body,
)
from lorafaas.errors import LoraFaasError, NotFound
from lorafaas.names import QualifiedName, check_entity_name
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Namespace, Package


def _package_name(request: web.Request) -> str:
    return check_entity_name(entity_name(request), "name")


async def put_package(request: web.Request) -> web.Response:
    """Create (or with ?overwrite=true update, keeping what is not sent) a package or a
    binding (`binding: {namespace, name}`)."""
    identity = await namespace_of(request)
    name, overwrite = _package_name(request), flag(request, "overwrite")
    spec = parse_package_body(await read_json(request), identity.namespace)
    async with request.app[sessions_key]() as session, session.begin():
        namespace = await session.get(Namespace, identity.namespace_id)
        assert namespace is not None
        package = await package_rows.put_package(session, namespace, name, spec, overwrite)
        body = package_json(package, identity.namespace)
    return web.json_response(body)


async def get_package(request: web.Request) -> web.Response:
    """A package with its actions; a binding with the bound package's actions and its
    parameters under the binding's (OpenWhisk's merge)."""
    identity = await namespace_of(request)
    name = _package_name(request)
    async with request.app[sessions_key]() as session:
        package = await package_rows.get_package(session, identity.namespace_id, name)
        body = package_json(package, identity.namespace)
        source, owner = package, identity.namespace
        bound = package_rows.binding_of(package)
        if bound is not None:
            source = await _readable_bound(session, identity.namespace, bound)
            owner = bound.namespace
            merged = {p["key"]: p for p in [*source.parameters, *package.parameters]}
            body["parameters"] = list(merged.values())
        actions = await package_rows.package_actions(session, source.namespace_id, source.name)
    body["actions"] = [package_action_json(action, owner) for action in actions]
    return web.json_response(body)


async def _readable_bound(session: AsyncSession, caller: str, bound: QualifiedName) -> Package:
    try:
        return await package_rows.check_binding(session, caller, bound)
    except LoraFaasError as error:  # unpublished or deleted since the binding was made
        raise NotFound(package_rows.NOT_FOUND) from error


async def delete_package(request: web.Request) -> web.Response:
    """Delete a binding, or a package that holds no actions (409 otherwise)."""
    identity = await namespace_of(request)
    name = _package_name(request)
    async with request.app[sessions_key]() as session, session.begin():
        package = await package_rows.delete_package(session, identity.namespace_id, name)
        body = package_json(package, identity.namespace)
    return web.json_response(body)


async def list_packages(request: web.Request) -> web.Response:
    """The namespace's packages and bindings, without parameters (OpenWhisk's list view);
    `{"packages": N}` with ?count=true."""
    identity = await namespace_of(request)
    limit, skip = paging(request)
    async with request.app[sessions_key]() as session:
        if flag(request, "count"):
            count = await package_rows.count_packages(session, identity.namespace_id, skip)
            return web.json_response({"packages": count})
        rows = await package_rows.list_packages(session, identity.namespace_id, limit, skip)
        listed = [package_json(row, identity.namespace) for row in rows]
    for item in listed:
        del item["parameters"]
    return web.json_response(listed)
