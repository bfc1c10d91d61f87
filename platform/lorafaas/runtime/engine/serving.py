"""The native engine with the runtime's public shape: run, run_batch and continuous, their
results (`generation.build_result`) and timings (ttft, prefill, decode, total, in ms), and
`engine: "native"` in the timings so the activation record can say which path served it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lorafaas.runtime.engine.decoder import NativeBatch
from lorafaas.runtime.engine.lora import load_adapter
from lorafaas.runtime.engine.model import NativeModel
from lorafaas.runtime.engine.spec import model_spec
from lorafaas.runtime.request import GenerationRequest, TokenSink
from lorafaas.runtime.tokens import TextTokenizer

NATIVE = "native"
Outcome = tuple[dict[str, Any], dict[str, float]]


class NativeEngine:
    """A backbone's native decoder with one function's adapter (more may be added)."""

    def __init__(self, config: dict[str, Any], tensors: Mapping[str, torch.Tensor],
                 tokenizer: TextTokenizer, eos_ids: set[int]) -> None:
        self.model = NativeModel(model_spec(config), tensors)
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.adapter: str | None = None

    def load_adapter(self, folder: Path, name: str = "default") -> None:
        """Add a peft LoRA adapter (unmerged); the first one is the function's."""
        self.model.add_adapter(load_adapter(folder, self.model.linears(), name))
        if self.adapter is None:
            self.adapter = name

    def batch(self, requests: Sequence[GenerationRequest], first_index: int = 0,
              adapters: Sequence[str | None] | None = None) -> NativeBatch:
        """A new batch of these requests (not prefilled yet)."""
        names = list(adapters) if adapters is not None else [self.adapter] * len(requests)
        return NativeBatch(self.model, self.tokenizer, requests, self.eos_ids, names,
                           first_index)

    def decoder_factory(self) -> Callable[..., NativeBatch]:
        """What `ContinuousEngine` builds its batches with."""
        return lambda model, tokenizer, requests, first: self.batch(requests, first)

    def run(self, request: GenerationRequest, sink: TokenSink | None = None) -> Outcome:
        """Generate for one request (`sink` receives each new token's ids)."""
        for _, result, timings in self.run_batch([request], sink):
            return result, timings
        raise AssertionError("a batch of one ended without its result")

    def run_batch(self, requests: Sequence[GenerationRequest], sink: TokenSink | None = None
                  ) -> Iterator[tuple[int, dict[str, Any], dict[str, float]]]:
        """Generate for a batch in one pass; yield (index, result, timings) as each ends.

        `sink` (one request only) receives each new token's ids as it comes."""
        if not requests:
            return
        started = time.monotonic()
        batch = self.batch(requests)
        live = list(batch.rows)
        finished = batch.prefill()
        first_token_at = time.monotonic()
        while True:
            if sink is not None:
                for row in live:
                    sink(row.tokens[-1:])
                live = list(batch.rows)
            now = time.monotonic()
            for row in finished:
                yield row.index, batch.result(row), _timings(started, first_token_at, now,
                                                             row.compute_ms)
            if not batch.rows:
                return
            finished = batch.step()


def _timings(started: float, first_token_at: float, ended: float,
             compute_ms: float) -> dict[str, Any]:
    ttft = (first_token_at - started) * 1000
    return {"ttft": ttft, "prefill": ttft, "decode": (ended - first_token_at) * 1000,
            "total": (ended - started) * 1000, "compute": compute_ms, "engine": NATIVE}
