"""OpenAI-compatible shapes: completions and chat requests in, responses and chunks out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lorafaas.errors import BadRequest

# OpenAI's defaults: completions stop after 16 tokens; chat runs to the action's limit.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
PASSED_THROUGH = ("max_tokens", "temperature", "top_p", "seed", "stop")


@dataclass(frozen=True)
class OpenAIRequest:
    """A parsed completions or chat request: which action, which parameters."""

    chat: bool
    model: str
    parameters: dict[str, Any]
    stream: bool


def parse_openai_request(body: Any, chat: bool) -> OpenAIRequest:
    """Validate a `/v1/completions` or `/v1/chat/completions` body."""
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must name an action: 'namespace/action' or 'action'")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported")
    parameters = {key: body[key] for key in PASSED_THROUGH if body.get(key) is not None}
    parameters.setdefault("temperature", 1.0)
    if chat:
        parameters["messages"] = _messages(body.get("messages"))
        if body.get("max_completion_tokens") is not None:
            parameters["max_tokens"] = body["max_completion_tokens"]
    else:
        parameters["prompt"] = _prompt(body.get("prompt"))
        parameters.setdefault("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    return OpenAIRequest(chat, model, parameters, bool(body.get("stream", False)))


def _messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    parsed = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise BadRequest("each message needs a 'role' and a text 'content'")
        parsed.append({"role": str(message.get("role", "user")), "content": message["content"]})
    return parsed


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string (or a list of one string)")
    return prompt


def resolve_model(model: str, namespace: str) -> str:
    """The action name a `model` names; 'namespace/action' must be the caller's namespace."""
    owner, _, action = model.rpartition("/")
    if owner and owner not in ("_", namespace):
        raise BadRequest(f"model {model!r} is in another namespace than the key's ({namespace})")
    return action


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
        choice["message"] = {"role": "assistant", "content": result.get("text", "")}
    else:
        choice["text"] = result.get("text", "")
    return {**_envelope(request, activation_id, chunk=False), "choices": [choice],
            "usage": usage_json(result)}


def chunk_json(request: OpenAIRequest, activation_id: str, delta: str | None,
               finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
    """One streamed chunk: a text delta, the opening role, or the finish reason."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
    if request.chat:
        choice["delta"] = {"role": "assistant", "content": ""} if role else (
            {"content": delta} if delta is not None else {})
    else:
        choice["text"] = delta or ""
    return {**_envelope(request, activation_id, chunk=True), "choices": [choice]}


def usage_chunk_json(request: OpenAIRequest, activation_id: str,
                     result: dict[str, Any]) -> dict[str, Any]:
    """The last chunk: no choices, the usage (as OpenAI's `include_usage` sends it)."""
    return {**_envelope(request, activation_id, chunk=True), "choices": [],
            "usage": usage_json(result)}


def _envelope(request: OpenAIRequest, activation_id: str, chunk: bool) -> dict[str, Any]:
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if request.chat \
        else "text_completion"
    prefix = "chatcmpl" if request.chat else "cmpl"
    return {"id": f"{prefix}-{activation_id}", "object": kind, "created": int(time.time()),
            "model": request.model}
