"""The native forward: one decoder for the Llama, Mistral, Qwen2/3, Phi-3 and Gemma 1/2/3
families, on the backbone's mapped weights (never written, never copied).

Each operation is the one transformers 5 runs, in the same dtype and order (RMSNorm in
float32, rotary cos/sin in float32 cast to the model dtype, the LoRA delta in float32
added as peft adds it), so greedy tokens equal peft's in float32 and in bfloat16.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from lorafaas.runtime.engine.attention import build_mask, eager, needs_mask, sdpa
from lorafaas.runtime.engine.cache import KVCache
from lorafaas.runtime.engine.lora import Adapter, LoraWeights
from lorafaas.runtime.engine.rope import Rope
from lorafaas.runtime.engine.spec import ModelSpec

# Which rows use which adapter in a forward: one adapter name for every row (the fast
# case), or (adapter name, row indices) groups for rows of different adapters.
Routing = str | None | list[tuple[str, torch.Tensor]]


class Linear:
    """A mapped weight (and bias) with the LoRA deltas of the adapters loaded on it."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight = weight
        self.bias = bias
        self.loras: dict[str, LoraWeights] = {}

    def __call__(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        result = F.linear(x, self.weight, self.bias)
        if routing is None or not self.loras:
            return result
        if isinstance(routing, str):
            lora = self.loras.get(routing)
            if lora is None:
                return result
            # peft's Linear.forward: x cast to the adapter's dtype, the sum cast back.
            delta = F.linear(F.linear(x.to(lora.a.dtype), lora.a), lora.b) * lora.scale
            return (result + delta).to(result.dtype)
        for name, rows in routing:  # peft's _mixed_batch_forward
            lora = self.loras.get(name)
            if lora is not None:
                sub = x[rows].to(lora.a.dtype)
                delta = F.linear(F.linear(sub, lora.a), lora.b) * lora.scale
                result[rows] += delta.to(result.dtype)
        return result


@dataclass
class Layer:
    """One decoder layer's weights."""

    norms: dict[str, torch.Tensor]
    q: Linear | None
    k: Linear | None
    v: Linear | None
    qkv: Linear | None  # Phi-3's fused projection
    o: Linear
    gate: Linear | None
    up: Linear | None
    gate_up: Linear | None  # Phi-3's fused projection
    down: Linear


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
        self.dtype = embed.dtype
        self.device = embed.device
        self.layers = [self._layer(tensors, i) for i in range(spec.num_layers)]
        self.ropes = {kind: Rope(rope) for kind, rope in spec.ropes.items()}
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

        norms = {name: tensors[f"{prefix}{name}.weight"] for name in
                 ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm", "self_attn.q_norm", "self_attn.k_norm")
                 if f"{prefix}{name}.weight" in tensors}
        o, down = linear("self_attn.o_proj"), linear("mlp.down_proj")
        if o is None or down is None:
            raise KeyError(f"{prefix}self_attn.o_proj or mlp.down_proj")
        return Layer(norms, linear("self_attn.q_proj"), linear("self_attn.k_proj"),
                     linear("self_attn.v_proj"), linear("self_attn.qkv_proj"), o,
                     linear("mlp.gate_proj"), linear("mlp.up_proj"), linear("mlp.gate_up_proj"),
                     down)

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

    def forward(self, ids: torch.Tensor, step: Step, cache: KVCache) -> torch.Tensor:
        """Run the tokens ([rows, tokens], written at column `cache.width`); the float32
        logits of each row's last token. The cache's width moves past them."""
        hidden = F.embedding(ids, self.embed)
        if self.embed_scale is not None:
            hidden = hidden * self.embed_scale
        cos_sin = {kind: rope.cos_sin(step.positions, self.dtype)
                   for kind, rope in self.ropes.items()}
        masks = self._masks(ids.shape[1], cache)
        cache.reserve(ids.shape[1])
        for index, layer in enumerate(self.layers):
            kind = self.spec.layers[index].layer_type
            rope = cos_sin.get(kind) or cos_sin[next(iter(cos_sin))]
            hidden = self._layer_forward(layer, index, hidden, rope, masks[kind], cache, step)
        cache.width += ids.shape[1]
        hidden = self._norm(hidden[:, -1:, :], self.norm)
        logits = self.lm_head(hidden, step.routing)
        if self.spec.final_softcap is not None:
            logits = torch.tanh(logits / self.spec.final_softcap) * self.spec.final_softcap
        return logits[:, -1, :].float()

    def _masks(self, tokens: int, cache: KVCache
               ) -> dict[str, tuple[int, torch.Tensor | None]]:
        """Per layer kind: the first key column its attention reads, and its mask."""
        end = cache.width + tokens
        queries = torch.arange(cache.width, end, device=self.device)
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
                columns = torch.arange(first, end, device=self.device)
                valid = columns[None, :] >= cache.starts_tensor()[:, None]
                mask = build_mask(valid, queries, first, window)
            masks[layer.layer_type] = (first, mask)
        return masks

    def _norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        eps = self.spec.rms_norm_eps
        if self.spec.norm_offset:
            out = x.float()
            out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + eps)
            return (out * (1.0 + weight.float())).type_as(x)
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return weight * h.to(x.dtype)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.activation == "silu":
            return F.silu(x)
        return F.gelu(x, approximate="tanh")

    def _layer_forward(self, layer: Layer, index: int, hidden: torch.Tensor,
                       rope: tuple[torch.Tensor, torch.Tensor],
                       mask: tuple[int, torch.Tensor | None], cache: KVCache,
                       step: Step) -> torch.Tensor:
        residual = hidden
        hidden = self._norm(hidden, layer.norms["input_layernorm"])
        hidden = self._attention(layer, index, hidden, rope, mask, cache, step.routing)
        if self.spec.sandwich_norms:
            hidden = self._norm(hidden, layer.norms["post_attention_layernorm"])
            hidden = residual + hidden
            residual = hidden
            hidden = self._norm(hidden, layer.norms["pre_feedforward_layernorm"])
            hidden = self._mlp(layer, hidden, step.routing)
            hidden = self._norm(hidden, layer.norms["post_feedforward_layernorm"])
            return residual + hidden
        hidden = residual + hidden
        residual = hidden
        hidden = self._norm(hidden, layer.norms["post_attention_layernorm"])
        return residual + self._mlp(layer, hidden, step.routing)

    def _qk_norm(self, layer: Layer, q: torch.Tensor, k: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        return (self._norm(q, layer.norms["self_attn.q_norm"]),
                self._norm(k, layer.norms["self_attn.k_norm"]))

    def _mlp(self, layer: Layer, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        if layer.gate_up is not None:
            gate, up = layer.gate_up(x, routing).chunk(2, dim=-1)
            return layer.down(up * self._act(gate), routing)
        assert layer.gate is not None and layer.up is not None
        return layer.down(self._act(layer.gate(x, routing)) * layer.up(x, routing), routing)

    def _attention(self, layer: Layer, index: int, x: torch.Tensor,
                   rope: tuple[torch.Tensor, torch.Tensor],
                   mask: tuple[int, torch.Tensor | None], cache: KVCache,
                   routing: Routing) -> torch.Tensor:
        spec = self.spec
        rows, tokens = x.shape[:2]
        shape = (rows, tokens, -1, spec.head_dim)
        if layer.qkv is not None:
            qkv = layer.qkv(x, routing)
            q_end = spec.num_heads * spec.head_dim
            k_end = q_end + spec.num_kv_heads * spec.head_dim
            q, k, v = qkv[..., :q_end], qkv[..., q_end:k_end], qkv[..., k_end:]
        else:
            assert layer.q is not None and layer.k is not None and layer.v is not None
            q, k, v = layer.q(x, routing), layer.k(x, routing), layer.v(x, routing)
        q, k, v = q.view(shape), k.view(shape), v.view(shape)
        # Qwen3 normalizes q and k per head before the transpose, Gemma 3 after it.
        if spec.qk_norm and spec.family == "qwen3":
            q, k = self._qk_norm(layer, q, k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if spec.qk_norm and spec.family != "qwen3":
            q, k = self._qk_norm(layer, q, k)
        q, k = _rotate(q, k, *rope)
        cache.write(index, k, v)
        first, attn_mask = mask
        keys, values = cache.view(index, first, cache.width + tokens)
        if spec.eager:
            assert attn_mask is not None
            out = eager(q, keys, values, attn_mask, spec.scaling, self.groups,
                        spec.attn_softcap)
        else:
            out = sdpa(q, keys, values, attn_mask, spec.scaling, self.groups)
        return layer.o(out, routing)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotate(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of q and k ([rows, heads, tokens, dim]); Phi-3's partial rotary
    leaves the dims past cos's untouched."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    dim = cos.shape[-1]
    if dim == q.shape[-1]:
        return (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)
    q_rot, k_rot = q[..., :dim], k[..., :dim]
    return (torch.cat([(q_rot * cos) + (_rotate_half(q_rot) * sin), q[..., dim:]], dim=-1),
            torch.cat([(k_rot * cos) + (_rotate_half(k_rot) * sin), k[..., dim:]], dim=-1))
