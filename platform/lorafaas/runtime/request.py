"""The default handler's request and result, shared by both engines: parsing, validation and
the result's shape. Light on purpose: the native path imports it, and must not import
transformers or peft (see `runtime.__main__`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lorafaas.runtime.sampling import GREEDY, SamplingDefaults
from lorafaas.runtime.tokens import TextTokenizer

DEFAULT_MAX_TOKENS = 64


class RequestError(ValueError):
    """The invocation's parameters are not usable; the message names the parameter."""


@dataclass(frozen=True)
class GenerationRequest:
    """The default handler's parameters (OpenAI-like names)."""

    prompt: str
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    return_token_ids: bool = False
    # Set (from any thread) when nobody reads the generation any more: it ends after the
    # decode step running, with finish_reason "cancelled" (see `runtime.server`).
    cancelled: threading.Event = field(default_factory=threading.Event, compare=False,
                                       repr=False)


ChatRenderer = Callable[[list[dict[str, Any]]], str]
TokenSink = Callable[[list[int]], None]


# vLLM's bound: a temperature below it samples as greedy decoding does.
SAMPLING_EPSILON = 1e-5


def plain_chat(messages: list[dict[str, Any]]) -> str:
    """A chat as text when the tokenizer has no chat template: one line a turn."""
    turns = "".join(f"{m.get('role', 'user')}: {m.get('content', '')}\n" for m in messages)
    return turns + "assistant:"


def parse_request(value: dict[str, Any], max_tokens_limit: int,
                  render_chat: ChatRenderer = plain_chat,
                  defaults: SamplingDefaults = GREEDY) -> GenerationRequest:
    """Validate the invocation parameters into a GenerationRequest; a parameter left out
    takes its value from `defaults` (greedy, or the checkpoint's generation config)."""
    prompt = _prompt(value, render_chat)
    max_tokens = _number(value, "max_tokens", int, DEFAULT_MAX_TOKENS, 1, max_tokens_limit)
    temperature = _number(value, "temperature", float, defaults.temperature, 0.0, 2.0)
    if temperature < SAMPLING_EPSILON:  # logits / 1e-313 overflow: such a request is greedy
        temperature = 0.0
    top_p = _number(value, "top_p", float, defaults.top_p, 0.0, 1.0)
    seed = value.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise RequestError("'seed' must be an integer")
    stop = value.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise RequestError("'stop' must be a string or a list of non-empty strings")
    return GenerationRequest(prompt, max_tokens, temperature, top_p, seed, stop,
                             bool(value.get("ignore_eos", False)),
                             bool(value.get("return_token_ids", False)))


def _prompt(value: dict[str, Any], render_chat: ChatRenderer) -> str:
    if isinstance(value.get("prompt"), str):
        return str(value["prompt"])
    messages = value.get("messages")
    if isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in messages):
        return render_chat(messages)
    raise RequestError("the parameters need a 'prompt' string or a 'messages' list")


def _number(value: dict[str, Any], key: str, kind: type, default: Any, low: float,
            high: float) -> Any:
    raw = value.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (kind is int and
                                                                      not isinstance(raw, int)):
        raise RequestError(f"'{key}' must be a {kind.__name__}")
    if not low <= raw <= high:
        raise RequestError(f"'{key}' must be between {low:g} and {high:g}, not {raw}")
    return kind(raw)


def build_result(tokenizer: TextTokenizer, request: GenerationRequest,
                 new_tokens: list[int], prompt_length: int) -> dict[str, Any]:
    """The function result of one generation: text (stop strings cut), reason, usage."""
    text = str(tokenizer.decode(new_tokens, skip_special_tokens=True))
    finish_reason = "length" if len(new_tokens) >= request.max_tokens else "stop"
    if finish_reason == "stop" and request.cancelled.is_set():
        finish_reason = "cancelled"  # its reader left: the text ends at the cut
    for stop in request.stop:
        if stop in text:
            text, finish_reason = text[:text.index(stop)], "stop"
    if new_tokens and new_tokens[-1] == tokenizer.eos_token_id:
        finish_reason = "stop"
    result: dict[str, Any] = {"text": text, "finish_reason": finish_reason,
                              "usage": {"prompt_tokens": prompt_length,
                                        "completion_tokens": len(new_tokens)}}
    if request.return_token_ids:
        result["token_ids"] = new_tokens
    return result
