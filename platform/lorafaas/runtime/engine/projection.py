"""Linear projections on the mapped weights, with the unmerged LoRA deltas of the adapters.

Inputs are 2-D ([tokens, in]) so each base projection is one `mm` (or `addmm` with a bias)
on a transposed view of the mapped weight: the kernel `F.linear` reaches after its
reshapes, without them, and never a copy of the weight. The delta is computed as peft
computes it (x cast to the adapter's float32, `(x Aᵀ) Bᵀ · s`, added in float32 and rounded
once to the model's dtype), with the scale folded into B where that is exact (a power of
two), and added in place.
"""

from __future__ import annotations

import math

import torch

from lorafaas.runtime.engine.lora import LoraWeights

# Which rows use which adapter in a forward: one adapter name for every row (the fast
# case), or (adapter name, row indices) groups for rows of different adapters.
Routing = str | None | list[tuple[str, torch.Tensor]]


class Delta:
    """One adapter on one linear, prepared for the forward: Aᵀ, Bᵀ (scaled when exact)."""

    def __init__(self, lora: LoraWeights) -> None:
        self.lora = lora
        self.a_t = lora.a.t()
        exact = lora.scale > 0 and math.frexp(lora.scale)[0] == 0.5
        # B·2ᵏ is exact in floating point, so (x Aᵀ)(2ᵏB)ᵀ equals ((x Aᵀ) Bᵀ)·2ᵏ bit for bit.
        self.b_t = (lora.b * lora.scale).t() if exact else lora.b.t()
        self.scale = None if exact else lora.scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """s·(x Aᵀ) Bᵀ in float32."""
        delta = torch.mm(torch.mm(x, self.a_t), self.b_t)
        if self.scale is not None:
            delta.mul_(self.scale)
        return delta

    def add_to(self, result: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """result + s·(x Aᵀ) Bᵀ in place, summed in float32 (x is float32)."""
        down = torch.mm(x, self.a_t)
        if self.scale is None and result.dtype == torch.float32:
            return result.addmm_(down, self.b_t)  # bit-equal to mm then add (alpha is 1)
        delta = torch.mm(down, self.b_t)
        if self.scale is not None:
            delta.mul_(self.scale)
        return result.add_(delta)


class Linear:
    """A mapped weight (and bias) with the LoRA deltas of the adapters loaded on it."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight = weight
        self.bias = bias
        self.loras: dict[str, LoraWeights] = {}
        self._weight_t = weight.t()  # a view: the mapped weight is never copied
        self._deltas: dict[str, Delta] = {}

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """x Wᵀ (+ bias) for x [tokens, in]."""
        if self.bias is None:
            return torch.mm(x, self._weight_t)
        return torch.addmm(self.bias, x, self._weight_t)

    def delta(self, name: str) -> Delta | None:
        """The adapter's prepared delta (made on first use from `loras`), or None."""
        lora = self.loras.get(name)
        if lora is None:
            return None
        prepared = self._deltas.get(name)
        if prepared is None or prepared.lora is not lora:
            prepared = self._deltas[name] = Delta(lora)
        return prepared

    def __call__(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """The projection of x [tokens, in] with the routed adapters' deltas."""
        # Inlined base() and delta(): a decode step makes this call 7·layers + 1 times, and
        # each Python frame costs more on the caches the weights' stream has just cleared.
        if self.bias is None:
            result = torch.mm(x, self._weight_t)
        else:
            result = torch.addmm(self.bias, x, self._weight_t)
        if routing is None or not self.loras:
            return result
        if isinstance(routing, str):
            delta = self._deltas.get(routing)
            if delta is None or delta.lora is not self.loras.get(routing):
                delta = self.delta(routing)
            if delta is not None:
                # peft's Linear.forward: x cast to the adapter's dtype, the sum cast back.
                delta.add_to(result, x if x.dtype == torch.float32 else x.float())
            return result
        for name, rows in routing:  # peft's _mixed_batch_forward: each delta cast, then added
            delta = self.delta(name)
            if delta is not None:
                result[rows] += delta(x[rows].float()).to(result.dtype)
        return result
