"""The actions resource: PUT, GET, DELETE, list, versions, and POST to invoke."""

from __future__ import annotations

import asyncio
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
from lorafaas.controller.auth import namespace_and_action, namespace_of
from lorafaas.controller.function_refs import function_ref
from lorafaas.controller.protocol import (
    LORA_KIND,
    ActionBody,
    action_json,
    action_version_json,
    limit_ranges,
    parse_action_body,
)
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
from lorafaas.names import DEFAULT_NAMESPACE
from lorafaas.registry import actions as action_rows
from lorafaas.registry.actions import qualified_name
from lorafaas.registry.activations import activation_json
from lorafaas.registry.artifacts import UPLOAD_NAME
from lorafaas.registry.models import Activation
from lorafaas.registry.profiles import function_profiles, profile_json

ACTIVATION_HEADER = "x-openwhisk-activation-id"
DEFAULT_BLOCKING_WAIT_MS = 60_000  # OpenWhisk answers 202 when a blocking invoke takes longer
MAX_BLOCKING_WAIT_MS = 600_000


async def put_action(request: web.Request) -> web.Response:
    """Create (or with ?overwrite=true update) an action from an adapter zip: JSON with its
    base64 in exec.code, or the zip itself as an application/zip body."""
    identity = await namespace_of(request)
    service = request.app[actions_key]
    name, overwrite = action_name(request, identity.namespace), flag(request, "overwrite")
    try:
        with service.uploads.slot(), service.store.staging() as folder:
            body = await _received_body(request, folder)
            action = await service.put(identity, name, body, overwrite)
    except UploadsBusy as error:
        return busy_response(request, error)
    await request.app[invocations_key].invoker.retire(name)
    return web.json_response(action_json(action, name.path, None))


async def _received_body(request: web.Request, folder: Path) -> ActionBody:
    # The body goes to a file in the upload's staging folder, never whole into memory.
    settings = request.app[settings_key]
    ranges = limit_ranges(settings.action_timeout_ms, settings.container_memory_mb,
                          settings.slo_ttft_ms)
    zip_path = folder / UPLOAD_NAME
    if is_zip_upload(request):
        await receive_body(request, zip_path, settings.max_adapter_bytes)
        backbone = request.query.get("backbone")
        annotations = [] if backbone is None else [{"key": "backbone", "value": backbone}]
        fields: dict[str, Any] = {"exec": {"kind": LORA_KIND, "binary": True, "code": zip_path},
                                  "annotations": annotations}
    else:
        await receive_body(request, folder / BODY_NAME, body_limit(settings.max_adapter_bytes))
        fields = await asyncio.to_thread(decode_action_body, folder / BODY_NAME, zip_path,
                                         settings.max_adapter_bytes)
        (folder / BODY_NAME).unlink()
    return parse_action_body(fields, ranges)


async def get_action(request: web.Request) -> web.Response:
    """One action with its containers, keep-alive policy, measured artifact profiles and
    the prefill model its batches are sized by; the zip is left out with ?code=false."""
    identity = await namespace_of(request)
    name, with_code = action_name(request, identity.namespace), flag(request, "code", default=True)
    # An action of a bound package reads through the binding, as OpenWhisk's GET does.
    resolved = await request.app[actions_key].resolve(identity, name)
    action = resolved.action
    code = None
    if with_code:
        code = request.app[actions_key].store.zip_path(action.artifact_digest).read_bytes()
    body = action_json(action, resolved.name.path, code)
    view = request.app[invoker_key].describe_function(function_ref(
        identity.namespace, action, request.app[actions_key].store.folder(action.artifact_digest),
        name))
    body["instances"] = view.instances
    body["keepAlive"] = view.keep_alive
    async with request.app[sessions_key]() as session:
        profiles = await function_profiles(session, identity.namespace, name.relative,
                                           action.artifact_digest)
    body["artifactProfiles"] = [profile_json(row) for row in profiles]
    body["prefillModel"] = view.prefill_model
    return web.json_response(body)


async def list_actions(request: web.Request) -> web.Response:
    """The namespace's actions, without code."""
    identity = await namespace_of(request)
    limit, skip = paging(request)
    async with request.app[sessions_key]() as session:
        rows = await action_rows.list_actions(session, identity.namespace_id, limit, skip)
    return web.json_response([action_json(row, qualified_name(identity.namespace, row).path, None)
                              for row in rows])


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
    identity, action = await namespace_and_action(request, name)
    parameters = json_object(await read_json(request), "the parameters")
    name = name.in_namespace(identity.namespace)
    if action is None and name.package is None:
        raise NotFound("The requested resource does not exist.")
    resolved = await request.app[actions_key].resolve(identity, name, action)
    service = request.app[invocations_key]
    # Non-blocking: durable (its pending row written) before the 202 answers.
    invocation = await service.start(identity, resolved.action, parameters,
                                     durable=not blocking, resolved=resolved)
    headers = {ACTIVATION_HEADER: invocation.activation_id}
    if not blocking:
        return web.json_response({"activationId": invocation.activation_id}, status=202,
                                 headers=headers)
    try:
        row = await asyncio.wait_for(asyncio.shield(invocation.task), wait_ms / 1000)
    except TimeoutError:
        await service.make_durable(invocation)  # a 202 promises the activation will run
        return web.json_response({"activationId": invocation.activation_id}, status=202,
                                 headers=headers)
    return _blocking_response(row, result_only, headers)


def _blocking_response(row: Activation, result_only: bool,
                       headers: dict[str, str]) -> web.Response:
    status = {0: 200, 1: 502, 2: 502}.get(row.status_code, 500)
    if any(a["key"] == "timeout" and a["value"] for a in row.annotations):
        status = 408  # the action exceeded its own time limit
    body = row.response["result"] if result_only else activation_json(row)
    return web.json_response(body, status=status, headers=headers)
