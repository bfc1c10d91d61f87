"""Basic authentication with `uuid:key`, and resolution of the `_` namespace."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from lorafaas.controller.appkeys import sessions_key
from lorafaas.errors import Forbidden, Unauthorized
from lorafaas.registry.models import Action
from lorafaas.registry.namespaces import (
    Identity,
    authenticate,
    authenticate_with_action,
    check_namespace_name,
)

identity_key = web.RequestKey("identity", Identity)


def credential_from_header(header: str | None) -> str:
    """The `uuid:key` of a Basic Authorization header, or of a Bearer one (OpenAI clients)."""
    if header and header.startswith("Bearer "):
        return header[7:].strip()
    if not header or not header.startswith("Basic "):
        raise Unauthorized("The resource requires authentication, which was not supplied "
                           "with the request")
    try:
        return base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise Unauthorized("The supplied authentication is invalid") from error


async def identify(request: web.Request) -> Identity:
    """Authenticate the request once and remember who it is."""
    if identity_key in request:
        return request[identity_key]
    credential = credential_from_header(request.headers.get("Authorization"))
    async with request.app[sessions_key]() as session:
        identity = await authenticate(session, credential)
    request[identity_key] = identity
    return identity


async def namespace_of(request: web.Request) -> Identity:
    """The caller's identity, checked against the `{namespace}` of the path (`_` is its own)."""
    return _in_path_namespace(request, await identify(request))


async def namespace_and_action(request: web.Request, name: str) -> tuple[Identity, Action | None]:
    """`namespace_of`, and the action `name` of that namespace (None when there is none),
    both read in one query (the invoke path)."""
    credential = credential_from_header(request.headers.get("Authorization"))
    async with request.app[sessions_key]() as session:
        identity, action = await authenticate_with_action(session, credential, name)
    request[identity_key] = identity
    return _in_path_namespace(request, identity), action


def _in_path_namespace(request: web.Request, identity: Identity) -> Identity:
    namespace = request.match_info["namespace"]
    if namespace != "_":
        check_namespace_name(namespace)
    if namespace not in ("_", identity.namespace):
        raise Forbidden("The supplied authentication is not authorized to access "
                        f"namespace {namespace!r}.")
    return identity
