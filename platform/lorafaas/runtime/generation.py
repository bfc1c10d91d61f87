"""Generation for one function: request parsing, decoding, stop handling, timings."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

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


def plain_chat(messages: list[dict[str, Any]]) -> str:
    """A chat as text when the tokenizer has no chat template: one line a turn."""
    turns = "".join(f"{m.get('role', 'user')}: {m.get('content', '')}\n" for m in messages)
    return turns + "assistant:"


def parse_request(value: dict[str, Any], max_tokens_limit: int,
                  render_chat: ChatRenderer = plain_chat) -> GenerationRequest:
    """Validate the invocation parameters into a GenerationRequest."""
    prompt = _prompt(value, render_chat)
    max_tokens = _number(value, "max_tokens", int, DEFAULT_MAX_TOKENS, 1, max_tokens_limit)
    temperature = _number(value, "temperature", float, 0.0, 0.0, 2.0)
    top_p = _number(value, "top_p", float, 1.0, 0.0, 1.0)
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


TokenSink = Callable[[list[int]], None]


class FirstTokenClock(BaseStreamer):
    """Notes when the first token comes out and hands each new token to an optional sink.

    generate() calls `put` first with the prompt, then with each new token.
    """

    def __init__(self, sink: TokenSink | None = None) -> None:
        self.puts = 0
        self.first_token_at: float | None = None
        self.sink = sink

    def put(self, value: torch.Tensor) -> None:
        """Called with the prompt, then with each new token."""
        self.puts += 1
        if self.puts == 2:
            self.first_token_at = time.monotonic()
        if self.puts >= 2 and self.sink is not None:
            self.sink(value.reshape(-1).tolist())

    def end(self) -> None:
        """Called when generation ends."""


def generate(model: PeftModel | PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
             request: GenerationRequest, sink: TokenSink | None = None
             ) -> tuple[dict[str, Any], dict[str, float]]:
    """Run one generation; return the result and its timings in milliseconds.

    `sink`, when given, receives the ids of each new token as it is generated.
    """
    started = time.monotonic()
    inputs = tokenizer(request.prompt, return_tensors="pt")
    prompt_length = int(inputs["input_ids"].shape[1])
    clock = FirstTokenClock(sink)
    if request.seed is not None:
        torch.manual_seed(request.seed)
    with torch.inference_mode():
        output = model.generate(**inputs, **_generate_options(model, tokenizer, request),  # type: ignore[operator]
                                streamer=clock,
                                stopping_criteria=StoppingCriteriaList([Cancelled(request)]))
    ended = time.monotonic()
    new_tokens = output[0, prompt_length:].tolist()
    result = build_result(tokenizer, request, new_tokens, prompt_length)
    first = clock.first_token_at or ended
    timings = {"ttft": (first - started) * 1000, "prefill": (first - started) * 1000,
               "decode": (ended - first) * 1000, "total": (ended - started) * 1000}
    return result, timings


class Cancelled(StoppingCriteria):
    """Stops generate() at the step after the request was cancelled."""

    def __init__(self, request: GenerationRequest) -> None:
        self.event = request.cancelled

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor,
                 **kwargs: Any) -> torch.BoolTensor:
        """Every row done once the request is cancelled."""
        done = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)
        return done  # type: ignore[return-value]


def _generate_options(model: PeftModel | PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      request: GenerationRequest) -> dict[str, Any]:
    # A fresh generation config: of the checkpoint's, only its EOS ids (all of them) apply;
    # its sampling defaults (top_k, repetition_penalty...) would change what the request
    # asked, and the batched path (runtime.batched) does not apply them either.
    options: dict[str, Any] = {"generation_config": GenerationConfig(
        eos_token_id=eos_token_ids(model, tokenizer) or None,
        pad_token_id=tokenizer.pad_token_id),
        "max_new_tokens": request.max_tokens}
    if request.temperature > 0:
        options.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
    else:
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if request.stop:
        options.update(stop_strings=request.stop, tokenizer=tokenizer)
    if request.ignore_eos:
        options["min_new_tokens"] = request.max_tokens  # EOS is suppressed until the end
    return options


def build_result(tokenizer: PreTrainedTokenizerBase, request: GenerationRequest,
                 new_tokens: list[int], prompt_length: int) -> dict[str, Any]:
    """The function result of one generation: text (stop strings cut), reason, usage."""
    text = tokenizer.decode(new_tokens, skip_special_tokens=True)
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


def eos_token_ids(model: PeftModel | PreTrainedModel,
                  tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids generation stops on: the generation config's (the checkpoint's
    generation_config.json), else the tokenizer's EOS."""
    config = getattr(model, "generation_config", None)
    configured = getattr(config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    if configured is None:
        return []
    return [int(i) for i in configured] if isinstance(configured, list) else [int(configured)]
