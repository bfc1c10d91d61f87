"""The packages resource: PUT, GET (with its actions), DELETE and list, as OpenWhisk's."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.controller.api.params import entity_name, flag, paging, read_json
from lorafaas.controller.appkeys import sessions_key
from lorafaas.controller.auth import identify, namespace_of, path_namespace
from lorafaas.controller.package_protocol import (
    package_action_json,
    package_json,
    parse_package_body,
)
from lorafaas.errors import LoraFaasError, NotFound
from lorafaas.names import QualifiedName, check_entity_name
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Namespace, Package
from lorafaas.registry.namespaces import find_namespace


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
    parameters under the binding's (OpenWhisk's merge); another namespace's package when it
    is published (OpenWhisk's read entitlement; 403 otherwise)."""
    identity = await identify(request)
    namespace = path_namespace(request, identity)
    name = _package_name(request)
    if namespace != identity.namespace:
        return await _shared_package(request, QualifiedName(namespace, name, name))
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


async def _shared_package(request: web.Request, name: QualifiedName) -> web.Response:
    async with request.app[sessions_key]() as session:
        package = await package_rows.shared_package(session, name)
        body = package_json(package, name.namespace)
        actions = await package_rows.package_actions(session, package.namespace_id,
                                                     package.name)
    body["actions"] = [package_action_json(action, name.namespace) for action in actions]
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
    of another namespace, its published packages alone (OpenWhisk lets any subject list
    them); `{"packages": N}` with ?count=true."""
    identity = await identify(request)
    namespace = path_namespace(request, identity)
    limit, skip = paging(request)
    async with request.app[sessions_key]() as session:
        owner_id: int | None = identity.namespace_id
        if namespace != identity.namespace:
            other = await find_namespace(session, namespace)
            owner_id = None if other is None else other.id
        published_only = namespace != identity.namespace
        if flag(request, "count"):
            count = 0 if owner_id is None else await package_rows.count_packages(
                session, owner_id, skip, published_only=published_only)
            return web.json_response({"packages": count})
        rows = [] if owner_id is None else await package_rows.list_packages(
            session, owner_id, limit, skip, published_only=published_only)
        listed = [package_json(row, namespace) for row in rows]
    for item in listed:
        del item["parameters"]
    return web.json_response(listed)
