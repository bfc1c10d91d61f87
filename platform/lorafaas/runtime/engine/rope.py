"""Rotary position embeddings, computed as transformers 5 computes them (without importing it).

The inverse frequencies follow transformers' `ROPE_INIT_FUNCTIONS` expression by
expression (default, linear, dynamic NTK, llama3, longrope), in float32, so cos/sin are
bit-identical. `Rope` keeps the state that dynamic and longrope scaling carry between
forwards in transformers (the frequencies follow the longest position seen).
"""

from __future__ import annotations

import math

import torch

from lorafaas.runtime.engine.spec import RopeSpec, longrope_attention_factor


def _dim(rope: RopeSpec) -> int:
    return int(rope.head_dim * float(rope.params.get("partial_rotary_factor", 1.0)))


def _exponents(dim: int) -> torch.Tensor:
    return torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim


def inv_freq(rope: RopeSpec, seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """The inverse frequencies and the cos/sin scale (`seq_len`: dynamic and longrope)."""
    base = float(rope.params.get("rope_theta", 10000.0))
    dim = _dim(rope)
    if rope.rope_type == "default":
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), 1.0
    if rope.rope_type == "linear":
        freqs = 1.0 / (base ** _exponents(dim))
        freqs /= float(rope.params["factor"])
        return freqs, 1.0
    if rope.rope_type == "dynamic":
        return _dynamic(rope, base, dim, seq_len), 1.0
    if rope.rope_type == "llama3":
        return _llama3(rope, base, dim), 1.0
    if rope.rope_type == "longrope":
        return _longrope(rope, base, dim, seq_len), longrope_attention_factor(rope)
    raise ValueError(f"rope type {rope.rope_type!r} has no native path")


def _dynamic(rope: RopeSpec, base: float, dim: int, seq_len: int | None) -> torch.Tensor:
    factor = float(rope.params["factor"])
    longest = rope.max_position_embeddings
    length = longest if seq_len is None else max(seq_len, longest)
    base = base * ((factor * length / longest) - (factor - 1)) ** (dim / (dim - 2))
    return 1.0 / (base ** _exponents(dim))


def _llama3(rope: RopeSpec, base: float, dim: int) -> torch.Tensor:
    freqs = 1.0 / (base ** _exponents(dim))
    factor = rope.params["factor"]
    low, high = rope.params["low_freq_factor"], rope.params["high_freq_factor"]
    old_context = rope.params["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_context / low, old_context / high
    wavelen = 2 * math.pi / freqs
    scaled = torch.where(wavelen > low_wavelen, freqs / factor, freqs)
    smooth = (old_context / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _longrope(rope: RopeSpec, base: float, dim: int, seq_len: int | None) -> torch.Tensor:
    original = int(rope.params["original_max_position_embeddings"])
    key = "long_factor" if seq_len and seq_len > original else "short_factor"
    ext = torch.tensor(rope.params[key], dtype=torch.float32)
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (ext * base ** shape)


class Rope:
    """cos/sin for given positions, with transformers' per-forward frequency updates."""

    def __init__(self, rope: RopeSpec) -> None:
        self.spec = rope
        self.original, self.scale = inv_freq(rope)
        self.freqs = self.original
        self.cached_len = rope.max_position_embeddings  # dynamic: the longest length seen
        self._long: torch.Tensor | None = None
        # Per frequency tensor and dtype: cos and signed sin of positions [0, length).
        self._tables: dict[tuple[int, torch.dtype], tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]] = {}

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ([batch, tokens, dim]) in `dtype`, computed in float32."""
        self._update(positions)
        return self._compute(positions, self.freqs, dtype)

    def rotation(self, positions: torch.Tensor, dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and the signed sin ([batch, 1, tokens, dim]: sin with its first half negated,
        see `rotate`), read from a table of every position so far for fixed frequencies."""
        self._update(positions)
        if self.freqs is not self.original and self.freqs is not self._long:
            cos, sin = self._compute(positions, self.freqs, dtype)  # dynamic, past the original
            return cos.unsqueeze(1), _signed(sin).unsqueeze(1)
        key = (id(self.freqs), dtype)
        table = self._tables.get(key)
        longest = int(positions.max()) + 1
        if table is None or table[0] is not self.freqs or table[1].shape[0] < longest:
            length = max(256, 1 << (longest - 1).bit_length())
            cos, sin = self._compute(torch.arange(length), self.freqs, dtype)
            table = self._tables[key] = (self.freqs, cos, _signed(sin))
        _, cos, sin = table
        if positions.numel() == 1:  # a decode step of one row: a view, no gather
            at = int(positions.reshape(()))
            return cos[at:at + 1].view(1, 1, 1, -1), sin[at:at + 1].view(1, 1, 1, -1)
        return cos[positions].unsqueeze(1), sin[positions].unsqueeze(1)

    def _compute(self, positions: torch.Tensor, freqs: torch.Tensor, dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * freqs.to(dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * self.scale, emb.sin() * self.scale
        return cos.to(dtype=dtype), sin.to(dtype=dtype)

    def _update(self, positions: torch.Tensor) -> None:
        kind = self.spec.rope_type
        if kind not in ("dynamic", "longrope"):
            return
        seq_len = int(positions.max()) + 1
        if kind == "longrope":
            original = int(self.spec.params["original_max_position_embeddings"])
            if self._long is None:
                self._long = inv_freq(self.spec, original + 1)[0]
            self.freqs = self._long if seq_len > original else self.original
            return
        # transformers' dynamic_frequency_update: grow past the cached length, reset below
        # the original one.
        original_len = self.spec.max_position_embeddings
        if seq_len > self.cached_len:
            self.freqs = inv_freq(self.spec, seq_len)[0]
            self.cached_len = seq_len
        if seq_len < original_len and self.cached_len > original_len:
            self.freqs = self.original
            self.cached_len = original_len


def _signed(sin: torch.Tensor) -> torch.Tensor:
    """sin with its first half negated: rotate_half(x)·sin = flip_halves(x)·signed(sin)
    exactly, since a negation is exact in floating point."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """transformers' `x·cos + rotate_half(x)·sin` ([rows, heads, tokens, dim]) in four ops
    (rotate_half(x)·sin is x₂‖x₁ times the signed sin), into `out` when given; Phi-3's
    partial rotary leaves the dims past cos's untouched."""
    dim = cos.shape[-1]
    if dim != x.shape[-1]:
        whole = torch.cat([rotate(x[..., :dim], cos, signed_sin), x[..., dim:]], dim=-1)
        return whole if out is None else out.copy_(whole)
    halves = x.roll(dim // 2, -1)  # x₂‖x₁
    product = x * cos if out is None else torch.mul(x, cos, out=out)
    return product.add_(halves * signed_sin)
