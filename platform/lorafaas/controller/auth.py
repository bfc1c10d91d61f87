"""Basic authentication with `uuid:key`, and resolution of the `_` namespace.

Failed authentications are limited per client address and per key uuid
(`lorafaas.controller.login_throttle`): the API's and the console's alike.
"""

from __future__ import annotations

import base64
import binascii
import re

from aiohttp import web

from lorafaas.controller.appkeys import login_throttle_key, sessions_key
from lorafaas.controller.middleware import storable_text
from lorafaas.errors import Forbidden, Unauthorized
from lorafaas.names import QualifiedName
from lorafaas.registry.models import Action
from lorafaas.registry.namespaces import (
    Identity,
    authenticate,
    authenticate_with_action,
    check_namespace_name,
)

identity_key = web.RequestKey("identity", Identity)
# A key uuid as `add_key` makes them; anything else cannot match and is not looked up.
_KEY_UUID = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_INVALID = "The supplied authentication is invalid"


def credential_from_header(header: str | None) -> str:
    """The `uuid:key` of a Basic Authorization header, or of a Bearer one (OpenAI clients)."""
    if not header or not header.startswith(("Basic ", "Bearer ")):
        raise Unauthorized("The resource requires authentication, which was not supplied "
                           "with the request")
    if not storable_text(header):  # bytes that are not UTF-8 decode to surrogates
        raise Unauthorized(_INVALID, param="Authorization")
    if header.startswith("Bearer "):
        return header[7:].strip()
    try:
        credential = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise Unauthorized(_INVALID, param="Authorization") from error
    if not storable_text(credential):
        raise Unauthorized(_INVALID, param="Authorization")
    return credential


def key_uuid_of(credential: str) -> str | None:
    """The uuid a credential names, when it is shaped like one."""
    key_uuid = credential.partition(":")[0]
    return key_uuid if _KEY_UUID.match(key_uuid) else None


async def authenticate_limited(app: web.Application, address: str,
                               credential: str) -> Identity:
    """Check a credential within the failed-sign-in limits (429 when over them)."""
    throttle = app[login_throttle_key]
    key_uuid = key_uuid_of(credential)
    throttle.check(address, key_uuid)
    try:
        if key_uuid is None:
            raise Unauthorized(_INVALID)
        async with app[sessions_key]() as session:
            return await authenticate(session, credential)
    except Unauthorized:
        throttle.failed(address, key_uuid)
        raise


def client_address(request: web.Request) -> str:
    """The peer's address (a proxy in front should pass the real one on its own socket)."""
    return request.remote or "unknown"


async def identify(request: web.Request) -> Identity:
    """Authenticate the request once and remember who it is."""
    if identity_key in request:
        return request[identity_key]
    header = request.headers.get("Authorization")
    try:
        credential = credential_from_header(header)
    except Unauthorized:
        if header:  # a malformed credential is a failed attempt; no credential is none
            request.app[login_throttle_key].check(client_address(request), None)
            request.app[login_throttle_key].failed(client_address(request), None)
        raise
    identity = await authenticate_limited(request.app, client_address(request), credential)
    request[identity_key] = identity
    return identity


async def namespace_of(request: web.Request) -> Identity:
    """The caller's identity, checked against the `{namespace}` of the path (`_` is its own)."""
    return _in_path_namespace(request, await identify(request))


async def caller_and_action(request: web.Request,
                            name: QualifiedName) -> tuple[Identity, Action | None]:
    """The caller, and the action of its own namespace with `name`'s package and name (None
    when there is none), both read in one query (the invoke path). The path's namespace is
    not checked: `path_namespace` gives it, and the caller decides what another's allows."""
    credential = credential_from_header(request.headers.get("Authorization"))
    async with request.app[sessions_key]() as session:
        identity, action = await authenticate_with_action(session, credential, name)
    request[identity_key] = identity
    return identity, action


def path_namespace(request: web.Request, identity: Identity) -> str:
    """The `{namespace}` of the path (`_`: the caller's own), checked as a name."""
    namespace = request.match_info["namespace"]
    if namespace == "_":
        return identity.namespace
    check_namespace_name(namespace)
    return namespace


def _in_path_namespace(request: web.Request, identity: Identity) -> Identity:
    namespace = path_namespace(request, identity)
    if namespace != identity.namespace:
        raise Forbidden("The supplied authentication is not authorized to access "
                        f"namespace {namespace!r}.")
    return identity
