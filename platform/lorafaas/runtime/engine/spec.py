"""What the native engine needs to know about a backbone, read from its config.json dict.

One `ModelSpec` per backbone: the family's numerics (norm offset, embedding scale,
activation, soft-capping, attention kind) and each layer's attention (full or sliding, its
rope). `unsupported(config)` names what the native path cannot do exactly, so the runtime
serves that backbone with the general (transformers + peft) path instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text")
ACTIVATIONS = ("silu", "gelu_pytorch_tanh")
FULL, SLIDING = "full_attention", "sliding_attention"


@dataclass(frozen=True)
class RopeSpec:
    """One rope: its type and parameters as transformers standardizes them."""

    rope_type: str
    params: dict[str, Any]
    head_dim: int
    max_position_embeddings: int


@dataclass(frozen=True)
class LayerSpec:
    """One decoder layer's attention: its window (None: full) and the rope it uses."""

    layer_type: str
    window: int | None


@dataclass(frozen=True)
class ModelSpec:
    """A backbone's shapes and its family's numerics."""

    family: str
    vocab_size: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_layers: int
    rms_norm_eps: float
    activation: str
    tied_embeddings: bool
    layers: tuple[LayerSpec, ...]
    ropes: dict[str, RopeSpec]  # by layer type
    norm_offset: bool  # Gemma: x·(1 + w), computed in float32
    embed_scale: float | None  # Gemma: the embedding times sqrt(hidden)
    qk_norm: bool  # Qwen3, Gemma 3: RMSNorm over each head of q and k
    sandwich_norms: bool  # Gemma 2/3: post-attention and pre/post-feedforward norms
    attn_softcap: float | None
    final_softcap: float | None
    scaling: float  # the attention's score scale
    eager: bool  # transformers runs the family with eager attention (soft-capping)
    max_position_embeddings: int


def unsupported(config: dict[str, Any]) -> str | None:
    """Why the native path cannot serve this config exactly, or None when it can."""
    family = config.get("model_type")
    if family not in FAMILIES:
        return f"architecture {family!r} has no native path"
    activation = config.get("hidden_activation") or config.get("hidden_act")
    if activation not in ACTIVATIONS:
        return f"activation {activation!r} has no native path"
    if config.get("mlp_bias") or (family != "qwen2" and config.get("attention_bias")):
        return "biases outside Qwen2's q/k/v projections have no native path"
    if config.get("use_bidirectional_attention"):
        return "bidirectional attention has no native path"
    for rope in _rope_parameters(config).values():
        if rope.get("rope_type", "default") not in ("default", "linear", "dynamic", "llama3",
                                                    "longrope"):
            return f"rope type {rope.get('rope_type')!r} has no native path"
    return None


def model_spec(config: dict[str, Any]) -> ModelSpec:
    """The spec of a supported config (see `unsupported`)."""
    reason = unsupported(config)
    if reason is not None:
        raise ValueError(reason)
    family = str(config["model_type"])
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // heads)
    gemma = family.startswith("gemma")
    max_positions = int(config.get("max_position_embeddings", 2048))
    layers = _layers(config, family)
    ropes = {kind: _rope(config, family, kind, head_dim, max_positions)
             for kind in {layer.layer_type for layer in layers}}
    scalar = config.get("query_pre_attn_scalar") if family in ("gemma2", "gemma3_text") else None
    return ModelSpec(
        family=family, vocab_size=int(config["vocab_size"]), hidden_size=hidden,
        num_heads=heads, num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=head_dim, num_layers=int(config["num_hidden_layers"]),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        activation=str(config.get("hidden_activation") or config.get("hidden_act")),
        tied_embeddings=bool(config.get("tie_word_embeddings", gemma)),
        layers=layers, ropes=ropes, norm_offset=gemma,
        embed_scale=hidden ** 0.5 if gemma else None,
        qk_norm=family in ("qwen3", "gemma3_text"),
        sandwich_norms=family in ("gemma2", "gemma3_text"),
        attn_softcap=_float(config.get("attn_logit_softcapping")) if family == "gemma2" else None,
        final_softcap=_float(config.get("final_logit_softcapping"))
        if family in ("gemma2", "gemma3_text") else None,
        scaling=float(scalar) ** -0.5 if scalar else head_dim ** -0.5,
        eager=family == "gemma2",
        max_position_embeddings=max_positions)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _layers(config: dict[str, Any], family: str) -> tuple[LayerSpec, ...]:
    """Each layer's attention kind, as transformers' cache and masks see it."""
    count = int(config["num_hidden_layers"])
    window = config.get("sliding_window")
    if family == "qwen2" and not config.get("use_sliding_window"):
        window = None
    types = config.get("layer_types")
    if types is None:
        types = _default_layer_types(config, family, count, window)
    return tuple(LayerSpec(kind, int(window) if kind == SLIDING and window else None)
                 for kind in types)


def _default_layer_types(config: dict[str, Any], family: str, count: int,
                         window: Any) -> list[str]:
    if family == "qwen2":
        first = int(config.get("max_window_layers", 28))
        return [SLIDING if window is not None and i >= first else FULL for i in range(count)]
    if family == "gemma2":
        return [SLIDING if (i + 1) % 2 else FULL for i in range(count)]
    if family == "gemma3_text":
        pattern = int(config.get("sliding_window_pattern")
                      or config.get("_sliding_window_pattern") or 6)
        return [SLIDING if (i + 1) % pattern else FULL for i in range(count)]
    return [SLIDING if window is not None else FULL for _ in range(count)]


def _rope_parameters(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The rope parameters by layer type (one entry, "", when every layer shares them)."""
    given = config.get("rope_parameters")
    if isinstance(given, dict) and given and all(isinstance(v, dict) for v in given.values()):
        return {kind: dict(value) for kind, value in given.items()}
    params = dict(given or config.get("rope_scaling") or {})
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    if config.get("partial_rotary_factor") is not None:
        params.setdefault("partial_rotary_factor", config["partial_rotary_factor"])
    if config.get("model_type") == "gemma3_text" and "rope_parameters" not in config:
        # Checkpoints from before per-layer rope parameters: local layers have their own base.
        local = {"rope_type": "default",
                 "rope_theta": config.get("rope_local_base_freq", 10000.0)}
        return {FULL: params, SLIDING: local}
    return {"": params}


def _rope(config: dict[str, Any], family: str, kind: str, head_dim: int,
          max_positions: int) -> RopeSpec:
    ropes = _rope_parameters(config)
    params = dict(ropes.get(kind) or ropes[""])
    rope_type = str(params.get("rope_type", "default"))
    if rope_type in ("llama3", "longrope"):
        original = config.get("original_max_position_embeddings") if family == "phi3" else None
        params["original_max_position_embeddings"] = int(
            original or params.get("original_max_position_embeddings") or max_positions)
    if family != "phi3" and rope_type == "default":
        params.pop("partial_rotary_factor", None)  # only Phi-3's default rope reads it
    return RopeSpec(rope_type, params, head_dim, max_positions)


def longrope_attention_factor(rope: RopeSpec) -> float:
    """Longrope's cos/sin scale: given, or from the context extension factor."""
    given = rope.params.get("attention_factor")
    if given is not None:
        return float(given)
    original = int(rope.params["original_max_position_embeddings"])
    factor = rope.params.get("factor") or rope.max_position_embeddings / original
    if factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(factor) / math.log(original))
