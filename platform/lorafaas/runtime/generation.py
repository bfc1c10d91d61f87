"""The general path's generation: transformers' `generate` on the peft model, with the
request's stop handling and timings. Imported only when the general path serves a function
(the request and result live in `runtime.request`, re-exported here for older callers)."""

from __future__ import annotations

import time
from collections.abc import Mapping
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

from lorafaas.runtime.request import (
    DEFAULT_MAX_TOKENS,
    ChatRenderer,
    GenerationRequest,
    RequestError,
    TokenSink,
    build_result,
    parse_request,
    plain_chat,
)

__all__ = ["DEFAULT_MAX_TOKENS", "ChatRenderer", "GenerationRequest", "RequestError",
           "TokenSink", "build_result", "eos_token_ids", "generate", "parse_request",
           "plain_chat"]


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
    # On the model's device, as the batched path puts its inputs (runtime.batched).
    inputs = on_device(tokenizer(request.prompt, return_tensors="pt"), model_device(model))
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


def model_device(model: torch.nn.Module) -> torch.device:
    """The device the model computes on (that of its first parameter)."""
    return next(model.parameters()).device


def on_device(inputs: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The tokenizer's output with every tensor on `device` (other values as they are)."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in inputs.items()}


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
