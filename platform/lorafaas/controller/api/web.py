"""Web actions: `/api/v1/web/{namespace}/{package}/{action}.{ext}` for actions annotated
`web-export: true`, with no key unless `require-whisk-auth` asks for one (see
`controller.web_actions` for the rules). The activation is the action owner's: it runs,
is throttled and is billed in the action's namespace."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import hdrs, web
from sqlalchemy import select

from lorafaas.controller.api.actions import ACTIVATION_HEADER, DEFAULT_BLOCKING_WAIT_MS
from lorafaas.controller.appkeys import invocations_key, sessions_key
from lorafaas.controller.auth import identify
from lorafaas.controller.middleware import error_response, request_id_key
from lorafaas.controller.web_actions import (
    CORS_METHODS,
    NOT_READY,
    WebRequest,
    WebResponse,
    action_arguments,
    activation_response,
    annotation,
    authorized,
    protected_parameters,
    request_body,
    split_extension,
)
from lorafaas.errors import LoraFaasError, NotFound, Unauthorized
from lorafaas.names import QualifiedName
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Action, AuthKey
from lorafaas.registry.namespaces import Identity, find_namespace
from lorafaas.registry.packages import Resolved

DEFAULT_PACKAGE = "default"  # OpenWhisk's name for "in no package"


async def web_action(request: web.Request) -> web.StreamResponse:
    """Run a web action and answer with its result, rendered by the path's extension."""
    segment = request.match_info["action"]
    name, _, path = segment.partition("/")
    name, extension = split_extension(name)
    owner, resolved = await _exported(request, name)
    action = resolved.action
    cors = _cors(request, action)
    try:
        if request.method == "OPTIONS" and cors:
            return web.Response(status=200, headers=dict(cors))
        caller = await _caller(request)
        if request.method != "OPTIONS" and not authorized(
                action.annotations, _lower_headers(request), caller is not None):
            raise Unauthorized("The supplied authentication is invalid")
        answer = await _run(request, owner, resolved, caller, "/" + path if path else "")
        if isinstance(answer, web.Response):
            answer.headers.extend(cors)
            return answer
        result, status_code, activation_id = answer
        rendered = activation_response(extension, "/" + path if path else "", status_code,
                                       result)
    except LoraFaasError as error:
        response = error_response(error.status, error.message, request.get(request_id_key, ""))
        response.headers.extend(cors)
        return response
    return _send(rendered, [*cors, (ACTIVATION_HEADER, activation_id)])


async def _exported(request: web.Request, name: str) -> tuple[Identity, Resolved]:
    """The owner's identity and the action, or 404 (no namespace, package, action or
    export: nothing tells which)."""
    namespace = request.match_info["namespace"]
    package = request.match_info["package"]
    async with request.app[sessions_key]() as session:
        row = await find_namespace(session, namespace)
        resolved = None if row is None else await package_rows.reach_action(
            session, row.id, QualifiedName(namespace, None if package == DEFAULT_PACKAGE
                                           else package, name))
        if row is None or resolved is None or annotation(resolved.action.annotations,
                                                         "web-export") is not True:
            raise NotFound("The requested resource does not exist.")
        subject = await session.scalar(select(AuthKey.subject).where(
            AuthKey.namespace_id == row.id).order_by(AuthKey.created_ms).limit(1))
    return Identity(subject=subject or namespace, namespace=namespace, namespace_id=row.id,
                    key_uuid=""), resolved


def _cors(request: web.Request, action: Action) -> list[tuple[str, str]]:
    """OpenWhisk's CORS headers, unless the action answers OPTIONS itself
    (`web-custom-options`)."""
    if annotation(action.annotations, "web-custom-options") is True:
        return []
    allowed = request.headers.get("Access-Control-Request-Headers", "Authorization, Content-Type")
    return [("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", CORS_METHODS),
            ("Access-Control-Allow-Headers", allowed)]


async def _caller(request: web.Request) -> Identity | None:
    """The caller, when it sent a valid key (a web action needs none unless it asks)."""
    if "Authorization" not in request.headers:
        return None
    try:
        return await identify(request)
    except Unauthorized:
        return None


def _lower_headers(request: web.Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


async def _run(request: web.Request, owner: Identity, resolved: Resolved,
               caller: Identity | None, path: str) -> web.Response | tuple[Any, int, str]:
    """Invoke with the request's arguments; the result, its status code and the activation
    id, or the 202 of one still running past the wait."""
    action = resolved.action
    raw = annotation(action.annotations, "raw-http") is True
    # The header itself: once the body is read, aiohttp's `can_read_body` is false, and its
    # `content_type` defaults to application/octet-stream (a JSON body would become binary).
    body = await request.read()
    web_request = WebRequest(request.method, _lower_headers(request), path,
                             request.query_string, body,
                             request.headers.get(hdrs.CONTENT_TYPE) if body else None)
    arguments = action_arguments(web_request, request_body(web_request, raw), raw=raw,
                                 user=caller.namespace if caller is not None else None,
                                 protected=protected_parameters(action.annotations,
                                                                resolved.parameters()))
    service = request.app[invocations_key]
    invocation = await service.start(owner, action, arguments, durable=False,
                                     resolved=resolved)
    try:
        row = await asyncio.wait_for(asyncio.shield(invocation.task),
                                     DEFAULT_BLOCKING_WAIT_MS / 1000)
    except TimeoutError:
        await service.make_durable(invocation)
        response = error_response(202, NOT_READY, request.get(request_id_key, ""))
        response.headers[ACTIVATION_HEADER] = invocation.activation_id
        return response
    return row.response.get("result"), row.status_code, row.activation_id


def _send(rendered: WebResponse, headers: list[tuple[str, str]]) -> web.Response:
    response = web.Response(status=rendered.status, body=rendered.body or None)
    if rendered.content_type is not None:
        response.headers["Content-Type"] = rendered.content_type
    for name, value in [*rendered.headers, *headers]:
        response.headers.add(name, value)
    return response
