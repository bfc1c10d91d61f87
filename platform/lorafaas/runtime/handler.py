"""A LoRA function's own handler: `main(args, llm)` in its zip's `__main__.py`.

The handler runs in the function's own container (never a namespace container: see
`invoker.placement`), beside the model, so prompt templates, post-processing and tool
calls need no second action. What it returns is the activation's result, shaped as a
`python:3` action's (`runtime.user_code`: an exception is an application error, a result
that is not a dictionary an action developer error).

`llm(prompt=None, *, messages=None, max_tokens=64, temperature=…, top_p=…, seed=None,
stop=None)` generates with the function's own adapter and returns the result the default
handler returns, `{"text", "finish_reason", "usage": {"prompt_tokens",
"completion_tokens"}}`; a bad parameter raises `LLMError` (a ValueError) naming it.
`temperature` and `top_p` left out take the container's generation defaults. The handler
may call it any number of times, from several threads too: in continuous batching each
call joins the container's running decode (so concurrent calls share decode steps),
otherwise the calls run one after another.

The activation's timings add up its calls' (`prefill`, `decode`, `compute`); `total` is
the time the handler ran, `ttft` the time to the first call's first token, and
`promptTokens`/`completionTokens` the tokens of every call, which billing charges (the
result the handler returns is the owner's, and no measure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from lorafaas.runtime.request import GenerationRequest, RequestError
from lorafaas.runtime.user_code import Outcome, call_entry

Generate = Callable[[GenerationRequest], tuple[dict[str, Any], dict[str, float]]]
Parse = Callable[[dict[str, Any]], GenerationRequest]
_SUMMED = ("prefill", "decode", "compute", "restore")


class LLMError(RequestError):
    """A parameter of an `llm` call cannot be used (the message names it)."""


class LLM:
    """The `llm` a handler is given: the function's own model (see the module doc)."""

    def __init__(self, parse: Parse, generate: Generate, exclusive: bool) -> None:
        self._parse = parse
        self._generate = generate
        # Without continuous batching the model runs one generation at a time.
        self._lock = threading.Lock() if exclusive else None
        self._started = time.monotonic()
        self._mutex = threading.Lock()
        self.timings: dict[str, float] = {"promptTokens": 0, "completionTokens": 0,
                                          "llmCalls": 0}

    def __call__(self, prompt: str | None = None, *,
                 messages: list[dict[str, Any]] | None = None, **params: Any) -> dict[str, Any]:
        """Generate with the function's adapter; the default handler's result."""
        value = dict(params)
        if prompt is not None:
            value["prompt"] = prompt
        if messages is not None:
            value["messages"] = messages
        try:
            request = self._parse(value)
        except RequestError as error:
            raise LLMError(str(error)) from None
        called = time.monotonic()
        if self._lock is None:
            result, timings = self._generate(request)
        else:
            with self._lock:
                result, timings = self._generate(request)
        self._account(result, timings, (called - self._started) * 1000)
        return result

    def _account(self, result: dict[str, Any], timings: dict[str, float],
                 offset_ms: float) -> None:
        usage = result.get("usage") or {}
        with self._mutex:
            added = self.timings
            for key in _SUMMED:
                if isinstance(timings.get(key), (int, float)):
                    added[key] = added.get(key, 0.0) + float(timings[key])
            if "ttft" in timings and "ttft" not in added:
                added["ttft"] = offset_ms + float(timings["ttft"])
            added["promptTokens"] += int(usage.get("prompt_tokens", 0))
            added["completionTokens"] += int(usage.get("completion_tokens", 0))
            added["llmCalls"] += 1


def run_handler(entry: Callable[..., Any], args: dict[str, Any], llm: LLM
                ) -> tuple[Outcome, dict[str, float]]:
    """Call `main(args, llm)`; its outcome and the activation's timings (ms)."""
    started = time.monotonic()
    outcome = call_entry(entry, args, llm)
    timings = {key: round(value, 3) for key, value in llm.timings.items()}
    timings["total"] = round((time.monotonic() - started) * 1000, 3)
    return outcome, timings
