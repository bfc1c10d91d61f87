"""OpenAI-compatible endpoints: /v1/completions, /v1/chat/completions, /v1/models.

Each call is an activation like any other: throttled, recorded and metered. A client that
closes a stream cancels its generation: the activation ends at the cut (finish_reason
"cancelled"), metered up to it, and its container is free for the next request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from lorafaas.controller.api.params import read_json
from lorafaas.controller.appkeys import actions_key, invocations_key, sessions_key
from lorafaas.controller.auth import identify
from lorafaas.controller.invocations import Invocation
from lorafaas.controller.openai_errors import ModelNotFound, error_object
from lorafaas.controller.openai_protocol import (
    OpenAIRequest,
    check_max_tokens,
    chunk_json,
    parse_openai_request,
    resolve_model,
    response_json,
    usage_chunk_json,
)
from lorafaas.controller.protocol import DEFAULT_MAX_TOKENS
from lorafaas.errors import BadRequest, Forbidden, LoraFaasError, NotFound
from lorafaas.invoking.activations import StreamCancelled
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry.actions import qualified_name
from lorafaas.registry.models import Activation
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.packages import Resolved
from lorafaas.wire.aio import drain

logger = logging.getLogger(__name__)
ACTIVATION_HEADER = "x-openwhisk-activation-id"
MODELS_PAGE = 200


class ActivationFailed(LoraFaasError):
    """The function ran and failed; the status follows OpenWhisk's (502 or 500)."""

    code = "function_failed"


async def completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/completions`."""
    return await _serve(request, chat=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/chat/completions`."""
    return await _serve(request, chat=True)


async def list_models(request: web.Request) -> web.Response:
    """`GET /v1/models`: the caller's lora actions, every one (listed 200 at a time)."""
    identity = await identify(request)
    rows: list[Any] = []
    async with request.app[sessions_key]() as session:
        while len(page := await action_rows.list_actions(
                session, identity.namespace_id, MODELS_PAGE, len(rows))) == MODELS_PAGE:
            rows += page
        rows += page
    models = [{"id": str(qualified_name(identity.namespace, row)), "object": "model",
               "created": row.updated_ms // 1000, "owned_by": identity.namespace}
              for row in rows if row.exec_kind == "lora"]
    return web.json_response({"object": "list", "data": models})


async def _serve(request: web.Request, chat: bool) -> web.StreamResponse:
    identity = await identify(request)
    parsed = parse_openai_request(await read_json(request), chat)
    if parsed.stream:
        return await _stream(request, identity, parsed)
    invocation = await _start(request, identity, parsed)
    row = await invocation.task
    result = _successful_result(row)
    return web.json_response(response_json(parsed, row.activation_id, result),
                             headers={ACTIVATION_HEADER: row.activation_id})


async def _start(request: web.Request, identity: Identity, parsed: OpenAIRequest,
                 on_delta: Any = None) -> Invocation:
    name = resolve_model(parsed.model, identity.namespace)
    if name.namespace != identity.namespace:
        # A published package's action of another namespace, as the REST invoke allows it:
        # it runs for the caller, in the caller's namespace (throttled, recorded, billed).
        try:
            resolved = await request.app[actions_key].resolve_shared(identity, name)
        except (Forbidden, NotFound) as error:
            raise ModelNotFound(f"The model '{parsed.model}' does not exist or you do not "
                                f"have access to it: this key's namespace is "
                                f"'{identity.namespace}'.") from error
    else:
        resolved = await _own_model(request, identity, parsed, name)
    action = resolved.action
    if action.exec_kind != "lora":  # a code action generates nothing
        raise ModelNotFound(f"The model '{parsed.model}' is a {action.exec_kind} action, not "
                            f"a LoRA function.")
    limit = int(action.limits.get("max_tokens", DEFAULT_MAX_TOKENS))
    check_max_tokens(parsed, limit)
    # A chat without max_tokens runs to the function's limit, as OpenAI's runs to the model's.
    parameters = {"max_tokens": limit, **parsed.parameters}
    return await request.app[invocations_key].start(identity, action, parameters, on_delta,
                                                    resolved=resolved)


async def _own_model(request: web.Request, identity: Identity, parsed: OpenAIRequest,
                     name: QualifiedName) -> Resolved:
    """The caller's own action a `model` names (404 in OpenAI's shape when absent)."""
    try:
        resolved: Resolved = await request.app[actions_key].resolve(identity, name)
    except NotFound as error:
        raise ModelNotFound(f"The model '{parsed.model}' does not exist: namespace "
                            f"'{identity.namespace}' has no function '{name.relative}'."
                            ) from error
    return resolved


def _successful_result(row: Activation) -> dict[str, Any]:
    result: dict[str, Any] = row.response["result"]
    if row.status_code == 0:
        return result
    message = str(result.get("error", "the function failed"))
    status = failure_status(row.status_code)
    if status == 400:
        raise BadRequest(message)
    error = ActivationFailed(message)
    error.status = status
    raise error


def failure_status(status_code: int) -> int:
    """The HTTP status of a failed activation: 400 when the function refused the parameters
    (application error), then OpenWhisk's 502 (developer error) or 500 (internal error)."""
    return {1: 400, 2: 502}.get(status_code, 500)


async def stream_completion(request: web.Request, identity: Identity, body: dict[str, Any],
                            chat: bool = False) -> web.StreamResponse:
    """Stream a completion for an identity authenticated otherwise (the console's playground)."""
    return await _stream(request, identity, parse_openai_request(body, chat))


async def _stream(request: web.Request, identity: Identity,
                  parsed: OpenAIRequest) -> web.StreamResponse:
    """Server-sent events: token deltas, the finish reason (on the last chunk with a choice),
    the usage when `stream_options.include_usage` asks for it, then [DONE]."""
    deltas: asyncio.Queue[str] = asyncio.Queue()
    gone = asyncio.Event()  # the client closed the stream

    async def on_delta(delta: str) -> None:
        if gone.is_set():
            raise StreamCancelled("the client closed the stream")
        await deltas.put(delta)

    invocation = await _start(request, identity, parsed, on_delta)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           ACTIVATION_HEADER: invocation.activation_id})
    try:
        await _send_events(request, response, parsed, invocation, deltas)
    except (ConnectionError, asyncio.CancelledError) as error:
        # The next delta cancels the generation (within one decode step); the activation's
        # record is stored when it ends, at the cut.
        gone.set()
        logger.info("activation %s: the client closed its stream", invocation.activation_id)
        if isinstance(error, asyncio.CancelledError):
            raise
    return response


async def _send_events(request: web.Request, response: web.StreamResponse,
                       parsed: OpenAIRequest, invocation: Invocation,
                       deltas: asyncio.Queue[str]) -> None:
    await response.prepare(request)
    if parsed.chat:
        await _event(response, chunk_json(parsed, invocation.activation_id, None, role=True))
    async for delta in drain(deltas, invocation.task):
        await _event(response, chunk_json(parsed, invocation.activation_id, delta))
    row = invocation.task.result()
    if row.status_code == 0:
        result = row.response["result"]
        await _event(response, chunk_json(parsed, row.activation_id, None,
                                          finish_reason=result.get("finish_reason", "stop")))
        if parsed.include_usage:
            await _event(response, usage_chunk_json(parsed, row.activation_id, result))
    else:
        # The status is sent already: the failure goes in an error event, which OpenAI's
        # clients raise as an APIError with this message.
        message = str(row.response["result"].get("error", "the function failed"))
        await _event(response, {"error": error_object(failure_status(row.status_code), message,
                                                      code=ActivationFailed.code)})
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()


async def _event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())
