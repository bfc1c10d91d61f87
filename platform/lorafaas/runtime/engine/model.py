"""The native forward: one decoder for the Llama, Mistral, Qwen2/3, Phi-3 and Gemma 1/2/3
families, on the backbone's mapped weights (never written, never copied).

Each operation computes what transformers 5 computes, bit for bit, in the same dtype and
order (RMSNorm in float32, rotary cos/sin in float32 cast to the model dtype, the LoRA delta
in float32 added as peft adds it), so greedy tokens equal peft's in float32 and in
bfloat16. Where fewer operations give the same bits they are used: the decode step is
bound by the per-op overhead once the weights' bytes are read (one matmul per projection
on 2-D states, a fused rms_norm, in-place adds, rope from a table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from lorafaas.runtime.engine.attention import build_mask, eager, needs_mask, sdpa
from lorafaas.runtime.engine.cache import KVCache
from lorafaas.runtime.engine.lora import Adapter
from lorafaas.runtime.engine.projection import Linear, Routing
from lorafaas.runtime.engine.rope import Rope, rotate
from lorafaas.runtime.engine.spec import ModelSpec

__all__ = ["Layer", "Linear", "NativeModel", "Routing", "Step"]


class Norm:
    """RMSNorm as the family computes it: in float32, then `w·x` in the model's dtype, or
    Gemma's `x·(1 + w)` in float32 (its `1 + w` computed once here, as each forward would)."""

    def __init__(self, weight: torch.Tensor, eps: float, offset: bool) -> None:
        self.eps = eps
        self.offset = offset
        self.weight = 1.0 + weight.float() if offset else weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # transformers' operations themselves: torch's F.rms_norm gives the same bits but
        # is a composite of more of them on CPU (casts and copies included), and a decode
        # step runs 2·layers + 1 norms on cold caches (measured: 1.4 ms of 16 per step).
        h = x if x.dtype == torch.float32 else x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True).add_(self.eps))
        if self.offset:
            return h.mul_(self.weight).type_as(x)
        return self.weight * (h if h.dtype == x.dtype else h.to(x.dtype))


@dataclass
class Layer:
    """One decoder layer's weights."""

    norms: dict[str, Norm]
    q: Linear | None
    k: Linear | None
    v: Linear | None
    qkv: Linear | None  # Phi-3's fused projection
    o: Linear
    gate: Linear | None
    up: Linear | None
    gate_up: Linear | None  # Phi-3's fused projection
    down: Linear
    kind: str  # its attention (mask) kind
    rope: str  # the key of its rope in NativeModel.ropes


@dataclass
class Step:
    """What one forward needs beyond the tokens: where they go and who sees what."""

    positions: torch.Tensor  # [rows, tokens]
    routing: Routing


class NativeModel:
    """The decoder on mapped weights, with adapters added by name."""

    def __init__(self, spec: ModelSpec, tensors: Mapping[str, torch.Tensor]) -> None:
        self.spec = spec
        embed = tensors.get("model.embed_tokens.weight")
        head = tensors.get("lm_head.weight")
        if embed is None and spec.tied_embeddings:
            embed = head  # one name of a tied pair is published
        if embed is None:
            raise KeyError("model.embed_tokens.weight")
        self.embed = embed
        self.lm_head = Linear(embed if spec.tied_embeddings or head is None else head)
        self.norm = tensors["model.norm.weight"]
        self.final_norm = Norm(self.norm, spec.rms_norm_eps, spec.norm_offset)
        self.dtype = embed.dtype
        self.device = embed.device
        self.ropes = {kind: Rope(rope) for kind, rope in spec.ropes.items()}
        self.layers = [self._layer(tensors, i) for i in range(spec.num_layers)]
        self.groups = spec.num_heads // spec.num_kv_heads
        # The cache width at which Phi-3's longrope switches factors (see NativeBatch).
        self.long_rope_from = next(
            (int(r.params["original_max_position_embeddings"]) for r in spec.ropes.values()
             if r.rope_type == "longrope" and spec.family == "phi3"), -1)
        self.embed_scale = (torch.tensor(spec.embed_scale, dtype=self.dtype)
                            if spec.embed_scale is not None else None)

    def _layer(self, tensors: Mapping[str, torch.Tensor], index: int) -> Layer:
        prefix = f"model.layers.{index}."

        def linear(name: str) -> Linear | None:
            weight = tensors.get(f"{prefix}{name}.weight")
            return None if weight is None else Linear(weight, tensors.get(f"{prefix}{name}.bias"))

        norms = {name: Norm(tensors[f"{prefix}{name}.weight"], self.spec.rms_norm_eps,
                            self.spec.norm_offset) for name in
                 ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm", "self_attn.q_norm", "self_attn.k_norm")
                 if f"{prefix}{name}.weight" in tensors}
        o, down = linear("self_attn.o_proj"), linear("mlp.down_proj")
        if o is None or down is None:
            raise KeyError(f"{prefix}self_attn.o_proj or mlp.down_proj")
        kind = self.spec.layers[index].layer_type
        rope = kind if kind in self.ropes else next(iter(self.ropes))
        return Layer(norms, linear("self_attn.q_proj"), linear("self_attn.k_proj"),
                     linear("self_attn.v_proj"), linear("self_attn.qkv_proj"), o,
                     linear("mlp.gate_proj"), linear("mlp.up_proj"), linear("mlp.gate_up_proj"),
                     down, kind, rope)

    def linears(self) -> dict[str, Linear]:
        """Every linear module by its name in the transformers model (peft's keys)."""
        found = {"lm_head": self.lm_head}
        for i, layer in enumerate(self.layers):
            for attr, part in (("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"),
                               ("v", "self_attn.v_proj"), ("qkv", "self_attn.qkv_proj"),
                               ("o", "self_attn.o_proj"), ("gate", "mlp.gate_proj"),
                               ("up", "mlp.up_proj"), ("gate_up", "mlp.gate_up_proj"),
                               ("down", "mlp.down_proj")):
                module = getattr(layer, attr)
                if module is not None:
                    found[f"model.layers.{i}.{part}"] = module
        return found

    def add_adapter(self, adapter: Adapter) -> None:
        """Attach an adapter's deltas (unmerged) under its name."""
        linears = self.linears()
        for module, weights in adapter.modules.items():
            linears[module].loras[adapter.name] = weights

    def remove_adapter(self, name: str) -> None:
        """Detach an adapter."""
        for linear in self.linears().values():
            linear.loras.pop(name, None)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, step: Step, cache: KVCache) -> torch.Tensor:
        """Run the tokens ([rows, tokens], written at column `cache.width`); the float32
        logits of each row's last token. The cache's width moves past them."""
        rows, tokens = ids.shape
        # The hidden states stay [rows · tokens, hidden]: every projection is one matmul.
        hidden = F.embedding(ids.reshape(-1), self.embed)
        if self.embed_scale is not None:
            hidden = hidden * self.embed_scale
        rotations = {kind: rope.rotation(step.positions, self.dtype)
                     for kind, rope in self.ropes.items()}
        masks = self._masks(tokens, cache)
        cache.reserve(tokens)
        routing = _by_token(step.routing, tokens)
        for index, layer in enumerate(self.layers):
            hidden = self._layer_forward(layer, index, hidden, rotations[layer.rope],
                                         masks[layer.kind], cache, routing, rows)
        cache.width += tokens
        last = hidden.view(rows, tokens, -1)[:, -1] if tokens > 1 else hidden
        logits = self.lm_head(self.final_norm(last), step.routing)
        if self.spec.final_softcap is not None:
            logits = torch.tanh(logits / self.spec.final_softcap) * self.spec.final_softcap
        return logits.float()

    def _masks(self, tokens: int, cache: KVCache
               ) -> dict[str, tuple[int, torch.Tensor | None]]:
        """Per layer kind: the first key column its attention reads, and its mask."""
        end = cache.width + tokens
        masks: dict[str, tuple[int, torch.Tensor | None]] = {}
        for layer in self.spec.layers:
            if layer.layer_type in masks:
                continue
            window = layer.window
            # A decode step of a sliding layer reads the window's last columns, as
            # transformers' sliding cache holds them; a prefill reads every column.
            first = max(0, end - window) if window is not None and tokens == 1 else 0
            padded = any(start > first for start in cache.starts)
            mask = None
            if self.spec.eager or needs_mask(padded, tokens, end - first, window):
                queries = torch.arange(cache.width, end, device=self.device)
                columns = torch.arange(first, end, device=self.device)
                valid = columns[None, :] >= cache.starts_tensor()[:, None]
                mask = build_mask(valid, queries, first, window)
            masks[layer.layer_type] = (first, mask)
        return masks

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        """The activation, in place (x is a fresh projection output)."""
        if self.spec.activation == "silu":
            return F.silu(x, inplace=True)
        return F.gelu(x, approximate="tanh")

    def _layer_forward(self, layer: Layer, index: int, hidden: torch.Tensor,
                       rotation: tuple[torch.Tensor, torch.Tensor],
                       mask: tuple[int, torch.Tensor | None], cache: KVCache,
                       routing: Routing, rows: int) -> torch.Tensor:
        norms = layer.norms
        attended = self._attention(layer, index, norms["input_layernorm"](hidden), rotation,
                                   mask, cache, routing, rows)
        # The residual stream is this forward's own tensor: it is added to in place.
        if self.spec.sandwich_norms:
            hidden.add_(norms["post_attention_layernorm"](attended))
            fed = self._mlp(layer, norms["pre_feedforward_layernorm"](hidden), routing)
            return hidden.add_(norms["post_feedforward_layernorm"](fed))
        hidden.add_(attended)
        return hidden.add_(self._mlp(layer, norms["post_attention_layernorm"](hidden), routing))

    def _mlp(self, layer: Layer, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        if layer.gate_up is not None:
            gate, up = layer.gate_up(x, routing).chunk(2, dim=-1)
            # Out of place: the product must be contiguous, as transformers' is.
            activated = F.silu(gate) if self.spec.activation == "silu" else \
                F.gelu(gate, approximate="tanh")
            return layer.down(activated.mul_(up), routing)
        assert layer.gate is not None and layer.up is not None
        activated = self._act(layer.gate(x, routing))
        return layer.down(activated.mul_(layer.up(x, routing)), routing)

    def _attention(self, layer: Layer, index: int, x: torch.Tensor,
                   rotation: tuple[torch.Tensor, torch.Tensor],
                   mask: tuple[int, torch.Tensor | None], cache: KVCache,
                   routing: Routing, rows: int) -> torch.Tensor:
        spec = self.spec
        shape = (rows, x.shape[0] // rows, -1, spec.head_dim)
        if layer.qkv is not None:
            qkv = layer.qkv(x, routing)
            q_end = spec.num_heads * spec.head_dim
            k_end = q_end + spec.num_kv_heads * spec.head_dim
            q, k, v = qkv[:, :q_end], qkv[:, q_end:k_end], qkv[:, k_end:]
        else:
            assert layer.q is not None and layer.k is not None and layer.v is not None
            q, k, v = layer.q(x, routing), layer.k(x, routing), layer.v(x, routing)
        q, k, v = q.view(shape), k.view(shape), v.view(shape)
        # Qwen3 normalizes q and k per head before the transpose, Gemma 3 after it.
        if spec.qk_norm and spec.family == "qwen3":
            q, k = layer.norms["self_attn.q_norm"](q), layer.norms["self_attn.k_norm"](k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if spec.qk_norm and spec.family != "qwen3":
            q, k = layer.norms["self_attn.q_norm"](q), layer.norms["self_attn.k_norm"](k)
        width, tokens = cache.width, shape[1]
        end = width + tokens
        keys, values = cache.keys[index], cache.values[index]
        q = rotate(q, *rotation)
        rotate(k, *rotation, out=keys[:, :, width:end])  # written into the cache in place
        values[:, :, width:end] = v
        first, attn_mask = mask
        keys, values = keys[:, :, first:end], values[:, :, first:end]
        if spec.eager:
            assert attn_mask is not None
            out = eager(q, keys, values, attn_mask, spec.scaling, self.groups,
                        spec.attn_softcap)
        else:
            out = sdpa(q, keys, values, attn_mask, spec.scaling, self.groups)
        return layer.o(out, routing)


def _by_token(routing: Routing, tokens: int) -> Routing:
    """Row groups as groups of hidden-state rows ([rows · tokens, hidden]: row-major)."""
    if not isinstance(routing, list) or tokens == 1:
        return routing
    offsets = torch.arange(tokens)
    return [(name, (rows[:, None] * tokens + offsets).reshape(-1)) for name, rows in routing]
