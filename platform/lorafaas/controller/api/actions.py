"""The actions resource: PUT, GET, DELETE, list, versions, and POST to invoke."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from lorafaas.controller.api.params import (
    action_name,
    flag,
    integer,
    json_object,
    paging,
    read_json,
)
from lorafaas.controller.appkeys import (
    actions_key,
    invocations_key,
    invoker_key,
    sessions_key,
    settings_key,
)
from lorafaas.controller.auth import caller_and_action, identify, namespace_of, path_namespace
from lorafaas.controller.function_refs import code_digest, function_ref
from lorafaas.controller.protocol import (
    LORA_KIND,
    SEQUENCE_KIND,
    ActionBody,
    LimitRange,
    action_json,
    action_version_json,
    check_invoke_parameters,
    limit_ranges,
    parse_action_body,
)
from lorafaas.controller.sequence_actions import is_sequence_body, parse_sequence_body
from lorafaas.controller.uploads import (
    BODY_NAME,
    UploadsBusy,
    body_limit,
    busy_response,
    decode_action_body,
    is_zip_upload,
    receive_body,
)
from lorafaas.errors import NotFound
from lorafaas.names import DEFAULT_NAMESPACE, QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry.actions import qualified_name
from lorafaas.registry.activations import activation_json
from lorafaas.registry.artifacts import UPLOAD_NAME
from lorafaas.registry.code_artifacts import read_exec
from lorafaas.registry.models import Action, Activation
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.profiles import function_profiles, profile_json

ACTIVATION_HEADER = "x-openwhisk-activation-id"
DEFAULT_BLOCKING_WAIT_MS = 60_000  # OpenWhisk answers 202 when a blocking invoke takes longer
MAX_BLOCKING_WAIT_MS = 600_000
CODE_CHUNK = 3 << 16  # bytes of zip per base64 chunk (a multiple of 3: no padding inside)


async def put_action(request: web.Request) -> web.StreamResponse:
    """Create (or with ?overwrite=true update) an action from an adapter zip: JSON with its
    base64 in exec.code, or the zip itself as an application/zip body."""
    identity = await namespace_of(request)
    service = request.app[actions_key]
    name, overwrite = action_name(request, identity.namespace), flag(request, "overwrite")
    try:
        with service.uploads.slot(), service.store.staging() as folder:
            fields = await _received_fields(request, folder)
            if is_sequence_body(fields):  # no code: its components (sequence_actions)
                action = await service.put_sequence(identity, name, parse_sequence_body(
                    fields, identity.namespace, _ranges(request)), overwrite)
            else:
                action = await service.put(identity, name, await _parsed_body(
                    fields, _ranges(request), folder), overwrite)
    except UploadsBusy as error:
        return busy_response(request, error)
    await request.app[invocations_key].invoker.retire(name)
    # As OpenWhisk: the stored entity, its code included (a zip's base64, or the source).
    digest = action.artifact_digest  # a sequence has none
    code = None if digest is None else service.store.zip_path(digest)
    code_exec = _code_exec(request, action)
    return await action_response(request, action_json(action, name.path, None, code_exec),
                                 code, binary=code_exec is None or bool(code_exec["binary"]))


def _code_exec(request: web.Request, action: Action) -> dict[str, Any] | None:
    """A code action's stored `exec` (kind, main, binary); None for a lora action or a
    sequence."""
    if action.exec_kind in (LORA_KIND, SEQUENCE_KIND):
        return None
    return read_exec(request.app[actions_key].store.folder(code_digest(action))).as_json()


async def action_response(request: web.Request, body: dict[str, Any],
                          zip_path: Path | None, binary: bool = True) -> web.StreamResponse:
    """The action's JSON; with `zip_path`, its base64 in `exec.code`, encoded and sent in
    chunks, so that memory does not grow with the adapter's size (a code action's source
    text, not binary, as it is)."""
    if zip_path is None:
        return web.json_response(body)
    if not binary:
        body["exec"]["code"] = await asyncio.to_thread(zip_path.read_text, "utf-8", "replace")
        return web.json_response(body)
    marker = f"code-{uuid.uuid4().hex}"
    body["exec"]["code"] = marker
    head, tail = (part.encode() for part in json.dumps(body).split(f'"{marker}"', 1))
    size = zip_path.stat().st_size
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(head) + len(tail) + 2 + 4 * -(-size // 3)
    await response.prepare(request)
    await response.write(head + b'"')
    with zip_path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, CODE_CHUNK):
            await response.write(base64.b64encode(chunk))
    await response.write(b'"' + tail)
    await response.write_eof()
    return response


def _ranges(request: web.Request) -> dict[str, LimitRange]:
    settings = request.app[settings_key]
    return limit_ranges(settings.action_timeout_ms, settings.container_memory_mb,
                        settings.slo_ttft_ms)


async def _received_fields(request: web.Request, folder: Path) -> dict[str, Any]:
    # The body goes to a file in the upload's staging folder, never whole into memory.
    settings = request.app[settings_key]
    zip_path = folder / UPLOAD_NAME
    if is_zip_upload(request):
        await receive_body(request, zip_path, settings.max_adapter_bytes)
        backbone = request.query.get("backbone")
        fields: dict[str, Any] = {"exec": {"kind": LORA_KIND, "code": zip_path}}
        if backbone is not None:
            fields["annotations"] = [{"key": "backbone", "value": backbone}]
    else:
        await receive_body(request, folder / BODY_NAME, body_limit(settings.max_adapter_bytes))
        fields = await asyncio.to_thread(decode_action_body, folder / BODY_NAME, zip_path,
                                         settings.max_adapter_bytes)
        (folder / BODY_NAME).unlink()
    return fields


async def _parsed_body(fields: dict[str, Any], ranges: dict[str, LimitRange],
                       folder: Path) -> ActionBody:
    """The parsed body; a code action's source text staged as a file, as an upload is."""
    parsed = parse_action_body(fields, ranges)
    if isinstance(parsed.code, str):
        zip_path = folder / UPLOAD_NAME
        await asyncio.to_thread(zip_path.write_text, parsed.code, "utf-8")
        parsed = dataclasses.replace(parsed, code=zip_path)
    return parsed


async def get_action(request: web.Request) -> web.StreamResponse:
    """One action with its containers, keep-alive policy, measured artifact profiles and
    the prefill model its batches are sized by; the zip is left out with ?code=false."""
    identity = await identify(request)
    namespace = path_namespace(request, identity)
    name, with_code = action_name(request, namespace), flag(request, "code", default=True)
    if namespace != identity.namespace:  # a published package's: the action, as it is
        return await _shared_action(request, identity, name, with_code)
    # An action of a bound package reads through the binding, as OpenWhisk's GET does.
    resolved = await request.app[actions_key].resolve(identity, name)
    action = resolved.action
    if action.exec_kind == SEQUENCE_KIND:  # no code, no containers of its own
        return web.json_response(action_json(action, resolved.name.path, None))
    code_exec = _code_exec(request, action)
    body = action_json(action, resolved.name.path, None, code_exec)
    view = request.app[invoker_key].describe_function(function_ref(
        identity.namespace, action, request.app[actions_key].store.folder(code_digest(action)),
        name))
    body["instances"] = view.instances
    body["keepAlive"] = view.keep_alive
    async with request.app[sessions_key]() as session:
        profiles = await function_profiles(session, identity.namespace, name.relative,
                                           code_digest(action))
    body["artifactProfiles"] = [profile_json(row) for row in profiles]
    body["prefillModel"] = view.prefill_model
    zip_path = request.app[actions_key].store.zip_path(code_digest(action))
    return await action_response(request, body, zip_path if with_code else None,
                                 binary=code_exec is None or bool(code_exec["binary"]))


async def _shared_action(request: web.Request, identity: Identity, name: QualifiedName,
                         with_code: bool) -> web.StreamResponse:
    """An action of another namespace's published package (OpenWhisk's entitlement lets any
    subject read it): the action's JSON, without the owner's containers and profiles."""
    resolved = await request.app[actions_key].resolve_shared(identity, name)
    action = resolved.action
    if action.exec_kind == SEQUENCE_KIND:
        return web.json_response(action_json(action, resolved.name.path, None))
    code_exec = _code_exec(request, action)
    body = action_json(action, resolved.name.path, None, code_exec)
    zip_path = request.app[actions_key].store.zip_path(code_digest(action))
    return await action_response(request, body, zip_path if with_code else None,
                                 binary=code_exec is None or bool(code_exec["binary"]))


async def list_actions(request: web.Request) -> web.Response:
    """The namespace's actions, without code; `{"actions": N}` with ?count=true."""
    identity = await namespace_of(request)
    limit, skip = paging(request)
    async with request.app[sessions_key]() as session:
        if flag(request, "count"):
            count = await action_rows.count_actions(session, identity.namespace_id, skip)
            return web.json_response({"actions": count})
        rows = await action_rows.list_actions(session, identity.namespace_id, limit, skip)
    return web.json_response([action_json(row, qualified_name(identity.namespace, row).path,
                                          None, _code_exec(request, row)) for row in rows])


async def list_action_versions(request: web.Request) -> web.Response:
    """The action's kept versions, newest first."""
    identity = await namespace_of(request)
    rows = await request.app[actions_key].versions(identity,
                                                   action_name(request, identity.namespace))
    return web.json_response([action_version_json(row) for row in rows])


async def delete_action(request: web.Request) -> web.Response:
    """Delete an action and its warm containers."""
    identity = await namespace_of(request)
    name = action_name(request, identity.namespace)
    action = await request.app[actions_key].delete(identity, name)
    await request.app[invocations_key].invoker.retire(name)
    return web.json_response(action_json(action, name.path, None))


async def invoke_action(request: web.Request) -> web.Response:
    """Invoke: 202 with the id, or with ?blocking=true the record (or ?result=true its result).

    Every parameter is checked before the activation is accepted: a refused invocation
    never runs and is never billed.
    """
    # The caller's namespace is known once authenticated, in the same query as the action.
    name, blocking, result_only = action_name(request, DEFAULT_NAMESPACE), \
        flag(request, "blocking"), flag(request, "result")
    wait_ms = integer(request, "timeout", DEFAULT_BLOCKING_WAIT_MS, 1, MAX_BLOCKING_WAIT_MS)
    identity, action = await caller_and_action(request, name)
    namespace = path_namespace(request, identity)
    parameters = json_object(await read_json(request), "the parameters")
    name = name.in_namespace(namespace)
    if namespace != identity.namespace:
        # A published package's action of another namespace: it runs for the caller, in
        # the caller's namespace (throttled, recorded and billed there), as OpenWhisk's.
        resolved = await request.app[actions_key].resolve_shared(identity, name)
    elif action is None and name.package is None:
        raise NotFound("The requested resource does not exist.")
    else:
        resolved = await request.app[actions_key].resolve(identity, name, action)
    # `final` holds for the parameters the action runs with, its package's and binding's too.
    check_invoke_parameters(resolved.parameters(), resolved.action.annotations, parameters)
    service = request.app[invocations_key]
    # Non-blocking: durable (its pending row written) before the 202 answers.
    invocation = await service.start(identity, resolved.action, parameters,
                                     durable=not blocking, resolved=resolved)
    headers = {ACTIVATION_HEADER: invocation.activation_id}
    if not blocking:
        return web.json_response({"activationId": invocation.activation_id}, status=202,
                                 headers=headers)
    try:
        # The answer, not the task: the record is committed just after (see invocations).
        async with asyncio.timeout(wait_ms / 1000):
            row = await invocation.answer
    except TimeoutError:
        await service.make_durable(invocation)  # a 202 promises the activation will run
        return web.json_response({"activationId": invocation.activation_id}, status=202,
                                 headers=headers)
    return _blocking_response(row, result_only, headers)


def _blocking_response(row: Activation, result_only: bool,
                       headers: dict[str, str]) -> web.Response:
    # OpenWhisk's statuses: an application error and a developer error (a time-out
    # included, the record in the body) are 502, a platform error 500.
    status = {0: 200, 1: 502, 2: 502}.get(row.status_code, 500)
    body = row.response["result"] if result_only else activation_json(row)
    return web.json_response(body, status=status, headers=headers)
