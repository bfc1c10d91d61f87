"""A batch of rows decoding together on the native model: prefill, steps, rows leaving
and joining (the interface `runtime.continuous.ContinuousEngine` drives).

Rows keep their own positions (a row's position is its column minus its start column),
sampling settings, seed, adapter and stop conditions; padding is left of each row's
start and masked. A row that ends leaves the cache at once, so later steps are smaller.
Sampling is the batch path's of today: temperature and top_p with a per-request
generator seeded by the request's seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lorafaas.runtime.engine.cache import KVCache
from lorafaas.runtime.engine.model import NativeModel, Routing, Step
from lorafaas.runtime.request import GenerationRequest, build_result
from lorafaas.runtime.tokens import TextTokenizer, pad_id


@dataclass
class Row:
    """One request's sequence while it decodes."""

    index: int
    request: GenerationRequest
    prompt_length: int
    sampler: torch.Generator | None
    adapter: str | None
    tokens: list[int] = field(default_factory=list)
    compute_ms: float = 0.0


class NativeBatch:
    """Rows decoding together; `index` numbers rows from `first_index` in request order."""

    def __init__(self, model: NativeModel, tokenizer: TextTokenizer,
                 requests: Sequence[GenerationRequest], eos_ids: set[int],
                 adapters: Sequence[str | None], first_index: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self._eos = torch.tensor(sorted(eos_ids), dtype=torch.long)
        self.prompts = [list(tokenizer(r.prompt)["input_ids"]) for r in requests]
        self.rows = [Row(first_index + i, r, len(p), _sampler(r), a) for i, (r, p, a)
                     in enumerate(zip(requests, self.prompts, adapters, strict=True))]
        width = max(len(p) for p in self.prompts)
        spec = model.spec
        self.cache = KVCache(spec.num_layers, len(requests), spec.num_kv_heads, spec.head_dim,
                             width + max(r.max_tokens for r in requests), model.dtype,
                             model.device)
        self.cache.starts = [width - len(p) for p in self.prompts]
        self._prompts_by_index = {row.index: p for row, p in zip(self.rows, self.prompts,
                                                                 strict=True)}
        self._routing: Routing = None
        self._route()

    def result(self, row: Row) -> dict[str, Any]:
        """The finished row's result, in the single-request format."""
        return build_result(self.tokenizer, row.request, row.tokens, row.prompt_length)

    @torch.inference_mode()
    def prefill(self) -> list[Row]:
        """Run the left-padded prompts once; return the rows already finished."""
        return self._prefill(self.prompts)

    def _prefill(self, sequences: list[list[int]]) -> list[Row]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), pad_id(self.tokenizer), dtype=torch.long)
        positions = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, width - len(sequence):] = torch.tensor(sequence, dtype=torch.long)
            positions[row, width - len(sequence):] = torch.arange(len(sequence))
        return self._forward(ids, positions, [len(s) for s in sequences])

    @torch.inference_mode()
    def step(self) -> list[Row]:
        """Decode one token for every live row; return the rows that just finished."""
        if self.cache.width == self.model.long_rope_from:
            return self._recompute()
        ids = torch.tensor([[row.tokens[-1]] for row in self.rows], dtype=torch.long)
        positions = (self.cache.width - self.cache.starts_tensor()).unsqueeze(1)
        return self._forward(ids, positions, [1] * len(self.rows))

    def _recompute(self) -> list[Row]:
        """Phi-3's longrope switch, as transformers' generate makes it: when the sequence
        first passes the original context, the cache (computed with the short factors) is
        dropped and the whole sequence is run again (now with the long factors)."""
        sequences = [prompt + row.tokens for prompt, row in zip(self._row_prompts(), self.rows,
                                                                 strict=True)]
        width = max(len(s) for s in sequences)
        starts = [width - len(s) for s in sequences]
        spec = self.model.spec
        self.cache = KVCache(spec.num_layers, len(self.rows), spec.num_kv_heads, spec.head_dim,
                             self.cache.capacity, self.model.dtype, self.model.device)
        self.cache.starts = starts
        return self._prefill(sequences)

    def _row_prompts(self) -> list[list[int]]:
        return [self._prompts_by_index[row.index] for row in self.rows]

    def absorb(self, joining: NativeBatch) -> None:
        """Take in another prefilled batch's live rows: from now on they decode as one."""
        self.cache.join(joining.cache)
        self.rows = self.rows + joining.rows
        self._prompts_by_index.update(joining._prompts_by_index)
        self._route()

    def trim_padding(self) -> None:
        """Leading all-padding columns are dropped when rows leave (see KVCache.select)."""

    def _route(self) -> None:
        names = [row.adapter for row in self.rows]
        if len(set(names)) <= 1:
            self._routing = names[0] if names else None
            return
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            if name is not None:
                groups.setdefault(name, []).append(i)
        self._routing = [(name, torch.tensor(rows, dtype=torch.long))
                         for name, rows in groups.items()]

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, real: list[int]
                 ) -> list[Row]:
        started = time.monotonic()
        logits = self.model.forward(ids, Step(positions, self._routing), self.cache)
        tokens = self._next_tokens(logits)
        step_ms = (time.monotonic() - started) * 1000
        total = sum(real)
        for row, token, count in zip(self.rows, tokens, real, strict=True):
            row.tokens.append(token)
            row.compute_ms += step_ms * count / total
        return self._drop_finished()

    def _next_tokens(self, logits: torch.Tensor) -> list[int]:
        ignoring = [i for i, row in enumerate(self.rows) if row.request.ignore_eos]
        if len(ignoring) == len(self.rows) and self.eos_ids:
            logits.index_fill_(1, self._eos, float("-inf"))  # every row: one fill
        elif ignoring and self.eos_ids:
            logits[torch.tensor(ignoring).unsqueeze(1), self._eos] = float("-inf")
        greedy = logits.argmax(dim=-1).tolist()
        return [_sample(logits[i], row) if row.sampler is not None else int(greedy[i])
                for i, row in enumerate(self.rows)]

    def _drop_finished(self) -> list[Row]:
        done = [self._finished(row) for row in self.rows]
        if not any(done):
            return []
        finished = [row for row, d in zip(self.rows, done, strict=True) if d]
        keep = [i for i, d in enumerate(done) if not d]
        self.rows = [self.rows[i] for i in keep]
        if self.rows:
            self.cache.select(keep)
            self._route()
        return finished

    def _finished(self, row: Row) -> bool:
        if len(row.tokens) >= row.request.max_tokens or row.request.cancelled.is_set():
            return True
        if not row.request.ignore_eos and row.tokens[-1] in self.eos_ids:
            return True
        if row.request.stop:
            text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            return any(stop in text for stop in row.request.stop)
        return False


def _sample(logits: torch.Tensor, row: Row) -> int:
    """Temperature and nucleus (top_p) sampling with the row's own generator."""
    probs = torch.softmax(logits / row.request.temperature, dim=-1)
    ordered, order = probs.sort(descending=True)
    ordered[(ordered.cumsum(dim=-1) - ordered) > row.request.top_p] = 0.0
    choice = torch.multinomial(ordered, 1, generator=row.sampler)
    return int(order[choice].item())


def _sampler(request: GenerationRequest) -> torch.Generator | None:
    """A per-request generator, so a seed gives the same sample whatever the batch."""
    if request.temperature <= 0:
        return None
    generator = torch.Generator()
    if request.seed is None:
        generator.seed()
    else:
        generator.manual_seed(request.seed)
    return generator

