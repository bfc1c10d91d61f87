"""Batched generation for one function: one prefill of the whole batch, then a shared decode.

Prompts are left-padded so that every row's next token sits in the last column; the
attention mask hides the padding and the position ids restart at 0 after it, so each row
sees exactly what it would see alone. Each request keeps its own sampling settings and
stops on its own (max_tokens, EOS, stop strings). A finished row is reported at once and
dropped from the batch: its KV cache rows are removed, so it costs no more compute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import PeftModel
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import DynamicLayer

# The single-request result format, reused so that the two paths answer identically.
from lorafaas.runtime.generation import GenerationRequest, build_result, eos_token_ids
from lorafaas.runtime.tokens import pad_id


@dataclass(frozen=True)
class FinishedRequest:
    """One request's result and timings (ms), reported as soon as its sequence ended."""

    index: int
    result: dict[str, Any]
    timings: dict[str, float]


@dataclass
class _Row:
    """One request's sequence while it decodes."""

    index: int
    request: GenerationRequest
    prompt_length: int
    sampler: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    compute_ms: float = 0.0


def iter_batch(model: PeftModel | PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               requests: Sequence[GenerationRequest]) -> Iterator[FinishedRequest]:
    """Generate for every request in one batch; yield each one as soon as it ends."""
    if not requests:
        return
    started = time.monotonic()
    decoder = BatchDecoder(model, tokenizer, requests)
    finished = decoder.prefill()
    first_token_at = time.monotonic()
    while True:
        now = time.monotonic()
        for row in finished:
            yield FinishedRequest(row.index, decoder.result(row),
                                  _timings(started, first_token_at, now, row.compute_ms))
        if not decoder.rows:
            return
        finished = decoder.step()


def generate_batch(model: PeftModel | PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   requests: Sequence[GenerationRequest]
                   ) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """Generate for every request in one batch; return (result, timings) in request order."""
    outcomes: dict[int, tuple[dict[str, Any], dict[str, float]]] = {}
    for done in iter_batch(model, tokenizer, requests):
        outcomes[done.index] = (done.result, done.timings)
    return [outcomes[i] for i in range(len(requests))]


def _timings(started: float, first_token_at: float, ended: float,
             compute_ms: float) -> dict[str, float]:
    # Every row's first token comes out of the one prefill, so they share ttft.
    ttft = (first_token_at - started) * 1000
    return {"ttft": ttft, "prefill": ttft, "decode": (ended - first_token_at) * 1000,
            "total": (ended - started) * 1000, "compute": compute_ms}


class BatchDecoder:
    """The batch's KV cache, attention mask and positions, and the rows still decoding.

    Rows are numbered from `first_index` in request order (`FinishedRequest.index`).
    """

    def __init__(self, model: PeftModel | PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 requests: Sequence[GenerationRequest], first_index: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        prompts = [tokenizer(r.prompt)["input_ids"] for r in requests]
        self.rows = [_Row(first_index + i, r, len(p), _sampler(r, self.device)) for i, (r, p)
                     in enumerate(zip(requests, prompts, strict=True))]
        self.input_ids, self.mask = _left_pad(prompts, pad_id(tokenizer), self.device)
        # Position of each row's next token: its count of real (unpadded) tokens so far.
        self.positions = self.mask.sum(dim=1)
        self.cache = DynamicCache()

    def result(self, row: _Row) -> dict[str, Any]:
        """The finished row's result, in the single-request format."""
        return build_result(self.tokenizer, row.request, row.tokens, row.prompt_length)

    @torch.inference_mode()
    def prefill(self) -> list[_Row]:
        """Run the whole padded prompt batch once; return the rows already finished."""
        positions = (self.mask.cumsum(dim=1) - 1).clamp(min=0)
        return self._forward(self.input_ids, positions)

    @torch.inference_mode()
    def step(self) -> list[_Row]:
        """Decode one token for every live row; return the rows that just finished."""
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        position_ids = self.positions.unsqueeze(1)
        self.positions = self.positions + 1
        return self._forward(self.input_ids, position_ids)

    def absorb(self, joining: BatchDecoder) -> None:
        """Take in another (prefilled) batch's live rows: from now on they decode as one.

        The narrower of the two is padded on the left, in its KV cache and its mask: the
        padding is masked and each row keeps its own positions, so every row goes on seeing
        exactly the tokens it saw before (continuous batching).
        """
        width = max(self.mask.shape[1], joining.mask.shape[1])
        for mine, theirs in zip(_full_attention(self.cache), _full_attention(joining.cache),
                                strict=True):
            (keys, values), (their_keys, their_values) = _states(mine), _states(theirs)
            mine.keys = torch.cat([_pad_left(keys, width), _pad_left(their_keys, width)])
            mine.values = torch.cat([_pad_left(values, width), _pad_left(their_values, width)])
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(joining.mask, width)])
        self.positions = torch.cat([self.positions, joining.positions])
        self.input_ids = torch.cat([self.input_ids, joining.input_ids])
        self.rows = self.rows + joining.rows

    def trim_padding(self) -> None:
        """Drop the leading columns that are padding in every row (left by ended rows)."""
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0, 0]) if len(used) else 0
        if start == 0:
            return
        self.mask = self.mask[:, start:]
        for layer in _full_attention(self.cache):
            keys, values = _states(layer)
            layer.keys, layer.values = keys[..., start:, :], values[..., start:, :]

    def _forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> list[_Row]:
        started = time.monotonic()
        output = self.model(input_ids=input_ids, attention_mask=self.mask,
                            position_ids=position_ids, past_key_values=self.cache,
                            use_cache=True, logits_to_keep=1)
        tokens = _next_tokens(output.logits[:, -1, :].float(), self.rows, self.eos_ids)
        # Billing: each row pays for a step in proportion to its real (unpadded) tokens in
        # it, so a long prompt pays more of the prefill and decode steps split evenly.
        real = self.mask[:, -input_ids.shape[1]:].sum(dim=1).tolist()
        step_ms = (time.monotonic() - started) * 1000
        for row, token, count in zip(self.rows, tokens, real, strict=True):
            row.tokens.append(token)
            row.compute_ms += step_ms * count / sum(real)
        self.input_ids = torch.tensor(tokens, device=self.device).unsqueeze(1)
        return self._drop_finished()

    def _drop_finished(self) -> list[_Row]:
        done = [_is_finished(row, self.eos_ids, self.tokenizer) for row in self.rows]
        finished = [row for row, d in zip(self.rows, done, strict=True) if d]
        if not finished:
            return finished
        keep = torch.tensor([i for i, d in enumerate(done) if not d], dtype=torch.long,
                            device=self.device)
        # Removing the rows (not masking them) shrinks every later step's matrices.
        self.rows = [row for row, d in zip(self.rows, done, strict=True) if not d]
        if self.rows:
            self.cache.batch_select_indices(keep)
            self.mask, self.positions = self.mask[keep], self.positions[keep]
            self.input_ids = self.input_ids[keep]
        return finished


def _full_attention(cache: DynamicCache) -> list[DynamicLayer]:
    """The cache's layers, which must all keep every column (no sliding window): only then
    can columns be added or cut on the left."""
    layers = list(cache.layers)
    if not all(type(layer) is DynamicLayer for layer in layers):
        raise NotImplementedError("continuous batching needs a model of full-attention layers")
    return [layer for layer in layers if isinstance(layer, DynamicLayer)]


def _states(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's keys and values (every layer is filled after a prefill)."""
    if layer.keys is None or layer.values is None:
        raise ValueError("the cache layer holds nothing yet")
    return layer.keys, layer.values


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """A mask ([rows, columns]) or a cache layer's keys or values ([rows, heads, columns,
    dim]) padded with zeros on the left of its columns to `width`."""
    missing = width - tensor.shape[1 if tensor.dim() == 2 else -2]
    if missing == 0:
        return tensor
    padding = (missing, 0) if tensor.dim() == 2 else (0, 0, missing, 0)
    return torch.nn.functional.pad(tensor, padding)


def _left_pad(prompts: list[list[int]], pad_id: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask of the prompts padded on the left to one width."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return input_ids, mask


def _next_tokens(logits: torch.Tensor, rows: list[_Row], eos_ids: list[int]) -> list[int]:
    """Each row's next token: greedy argmax, or a sample with its own settings and seed."""
    ignoring = [i for i, row in enumerate(rows) if row.request.ignore_eos]
    if ignoring and eos_ids:
        # As generate's min_new_tokens: EOS can never be chosen.
        rows_index = torch.tensor(ignoring, device=logits.device).unsqueeze(1)
        logits[rows_index, torch.tensor(eos_ids, device=logits.device)] = float("-inf")
    greedy = logits.argmax(dim=-1).tolist()
    return [_sample(logits[i], row) if row.sampler is not None else int(greedy[i])
            for i, row in enumerate(rows)]


def _sample(logits: torch.Tensor, row: _Row) -> int:
    """Temperature and nucleus (top_p) sampling with the row's own generator."""
    probs = torch.softmax(logits / row.request.temperature, dim=-1)
    ordered, order = probs.sort(descending=True)
    # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
    ordered[(ordered.cumsum(dim=-1) - ordered) > row.request.top_p] = 0.0
    choice = torch.multinomial(ordered, 1, generator=row.sampler)
    return int(order[choice].item())


def _sampler(request: GenerationRequest, device: torch.device) -> torch.Generator | None:
    """A per-request generator, so a seed gives the same sample whatever the batch."""
    if request.temperature <= 0:
        return None
    generator = torch.Generator(device=device)
    if request.seed is None:
        generator.seed()  # fresh entropy: unseeded requests must not share one stream
    else:
        generator.manual_seed(request.seed)
    return generator


def _is_finished(row: _Row, eos_ids: list[int], tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the row hit max_tokens, EOS, or one of its stop strings, or was cancelled."""
    if len(row.tokens) >= row.request.max_tokens or row.request.cancelled.is_set():
        return True
    if not row.request.ignore_eos and row.tokens[-1] in eos_ids:
        return True
    if row.request.stop:
        # Matched in the generated text only, where the result is cut (not across the prompt).
        text = tokenizer.decode(row.tokens, skip_special_tokens=True)
        return any(stop in text for stop in row.request.stop)
    return False

