"""OpenAI-compatible shapes: completions and chat requests in, responses and chunks out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lorafaas.controller.openai_errors import InvalidParameter
from lorafaas.controller.openai_params import (
    check_parameters,
    include_usage,
    optional_bool,
    optional_int,
    optional_number,
    optional_stop,
)
from lorafaas.names import DEFAULT_NAMESPACE, QualifiedName

# OpenAI's defaults: completions stop after 16 tokens; chat runs to the function's limit
# (api/openai.py adds it).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
OPENAI_DEFAULT_TEMPERATURE = 1.0
# Roles a chat template knows; OpenAI's newer `developer` is its `system`.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class OpenAIRequest:
    """A parsed completions or chat request: which action, which parameters."""

    chat: bool
    model: str
    parameters: dict[str, Any]
    stream: bool
    include_usage: bool = False  # a stream ends with a usage chunk (stream_options)
    created: int = field(default_factory=lambda: int(time.time()))  # the same in each chunk


def parse_openai_request(body: Any, chat: bool) -> OpenAIRequest:
    """Validate a `/v1/completions` or `/v1/chat/completions` body."""
    if not isinstance(body, dict):
        raise InvalidParameter("The request body must be a JSON object.", "body")
    check_parameters(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidParameter("'model' must name a function: 'namespace/action' or "
                               "'action'.", "model")
    stream = optional_bool(body, "stream")
    parameters = _sampling(body, chat)
    if chat:
        parameters["messages"] = _messages(body.get("messages"))
    else:
        parameters["prompt"] = _prompt(body.get("prompt"))
    return OpenAIRequest(chat, model, parameters, stream, include_usage(body, stream))


def _sampling(body: dict[str, Any], chat: bool) -> dict[str, Any]:
    max_tokens = optional_int(body, "max_tokens", 1)
    max_completion_tokens = optional_int(body, "max_completion_tokens", 1)
    if None not in (max_tokens, max_completion_tokens) and max_tokens != max_completion_tokens:
        raise InvalidParameter("'max_tokens' and 'max_completion_tokens' differ: give one.",
                               "max_completion_tokens")
    parameters = {
        "max_tokens": max_completion_tokens or max_tokens
        or (None if chat else COMPLETIONS_DEFAULT_MAX_TOKENS),
        "temperature": optional_number(body, "temperature", 0.0, 2.0),
        "top_p": optional_number(body, "top_p", 0.0, 1.0),
        "seed": optional_int(body, "seed", -(2 ** 63)),
        "stop": optional_stop(body),
        "ignore_eos": optional_bool(body, "ignore_eos") or None,
    }
    parameters = {key: value for key, value in parameters.items() if value is not None}
    parameters.setdefault("temperature", OPENAI_DEFAULT_TEMPERATURE)
    return parameters


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidParameter("'messages' must be a non-empty list.", "messages")
    return [_message(message, index) for index, message in enumerate(messages)]


def _message(message: Any, index: int) -> dict[str, str]:
    param = f"messages[{index}]"
    if not isinstance(message, dict):
        raise InvalidParameter(f"'{param}' must be an object with a 'role' and a 'content'.",
                               param)
    role = message.get("role")
    if role in ("tool", "function"):
        raise InvalidParameter(f"'{param}.role' is {role!r}: tool and function calls are "
                               "not supported.", f"{param}.role")
    for calls in ("tool_calls", "function_call"):
        if message.get(calls):
            raise InvalidParameter(f"'{param}.{calls}': tool and function calls are not "
                                   "supported.", f"{param}.{calls}")
    if role not in ROLES:
        raise InvalidParameter(f"'{param}.role' must be one of {', '.join(ROLES)}, not "
                               f"{role!r}.", f"{param}.role")
    return {"role": ROLES[role], "content": _content(message.get("content"), param)}


def _content(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    # Content parts: only text ones (images and audio need a model that reads them).
    if isinstance(content, list) and content and all(
            isinstance(part, dict) and part.get("type") == "text"
            and isinstance(part.get("text"), str) for part in content):
        return "".join(part["text"] for part in content)
    raise InvalidParameter(f"'{param}.content' must be a string or a list of text parts.",
                           f"{param}.content")


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidParameter("'prompt' must be a string (or a list of one string): one "
                               "prompt per request.", "prompt")
    return prompt


def resolve_model(model: str, namespace: str) -> QualifiedName:
    """The action a `model` names: in the caller's namespace, or `/ns/...` and
    `ns/pkg/action` in another's (a published package's action, checked by the caller).

    OpenWhisk's forms (`action`, `pkg/action`, `/ns/action`, `/ns/pkg/action`), and the ids
    `/v1/models` lists: `ns/action` and `ns/pkg/action`. So `x/action` is the namespace `x`
    when `x` is `_` or the caller's own namespace, else the package `x`.
    """
    parts = model.split("/")
    if model.startswith("/"):
        name = QualifiedName.parse(model, namespace)
    elif len(parts) == 3 or (len(parts) == 2 and parts[0] in (DEFAULT_NAMESPACE, namespace)):
        name = QualifiedName.parse(f"/{model}", namespace)
    else:
        name = QualifiedName.parse(model, namespace)
    return name


def check_max_tokens(request: OpenAIRequest, limit: int) -> None:
    """Refuse a `max_tokens` over the function's own limit (its `max_tokens` limit)."""
    asked = request.parameters.get("max_tokens")
    if asked is not None and asked > limit:
        raise InvalidParameter(f"'max_tokens' is {asked}, over the limit of {limit} tokens "
                               f"of the function '{request.model}'.", "max_tokens")


def usage_json(result: dict[str, Any]) -> dict[str, int]:
    """OpenAI's usage from a function result."""
    usage = result.get("usage", {})
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def response_json(request: OpenAIRequest, activation_id: str,
                  result: dict[str, Any]) -> dict[str, Any]:
    """The non-streamed response."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": result.get("finish_reason", "stop"),
                              "logprobs": None}
    if request.chat:
        choice["message"] = {"role": "assistant", "content": result.get("text", ""),
                             "refusal": None}
    else:
        choice["text"] = result.get("text", "")
    return {**_envelope(request, activation_id, chunk=False), "choices": [choice],
            "usage": usage_json(result)}


def chunk_json(request: OpenAIRequest, activation_id: str, delta: str | None,
               finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
    """One streamed chunk of one choice: the opening role (chat), a text delta, or the
    finish reason (with an empty delta, as OpenAI sends it)."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
    if request.chat:
        choice["delta"] = {"role": "assistant", "content": ""} if role else (
            {"content": delta} if delta is not None else {})
    else:
        choice["text"] = delta or ""
    chunk = {**_envelope(request, activation_id, chunk=True), "choices": [choice]}
    if request.include_usage:
        chunk["usage"] = None  # every chunk but the last has it null (OpenAI's reference)
    return chunk


def usage_chunk_json(request: OpenAIRequest, activation_id: str,
                     result: dict[str, Any]) -> dict[str, Any]:
    """The chunk `include_usage` asks for, just before [DONE]: no choices, the usage."""
    return {**_envelope(request, activation_id, chunk=True), "choices": [],
            "usage": usage_json(result)}


def _envelope(request: OpenAIRequest, activation_id: str, chunk: bool) -> dict[str, Any]:
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if request.chat \
        else "text_completion"
    prefix = "chatcmpl" if request.chat else "cmpl"
    return {"id": f"{prefix}-{activation_id}", "object": kind, "created": request.created,
            "model": request.model}
