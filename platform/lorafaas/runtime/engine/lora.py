"""A peft LoRA adapter as the native engine applies it: unmerged, y = xW + s·(x Aᵀ) Bᵀ.

The adapter is read from its folder (adapter_config.json + adapter_model.safetensors)
without peft. Which modules it adapts is decided twice, from the config as peft matches
`target_modules` (list or regex, `exclude_modules`, `layers_to_transform`) and from the
tensors in the file; when they disagree, or the adapter uses anything this path does not
compute exactly as peft (DoRA, biases, modules_to_save, an embedding adapter...),
`AdapterUnsupported` says why and the runtime takes the general path.

The weights are held in float32, as peft holds them (it upcasts a bf16/fp16 adapter on a
bf16/fp16 model: `autocast_adapter_dtype`), and the delta is computed as peft computes it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

PREFIX = "base_model.model."
# Config fields whose non-default value changes the computation.
_INEXACT = {"use_dora": False, "lora_bias": False, "modules_to_save": None,
            "trainable_token_indices": None, "target_parameters": None,
            "layer_replication": None, "alora_invocation_tokens": None,
            "use_qalora": False, "megatron_config": None}


class AdapterUnsupported(ValueError):
    """The native path cannot apply this adapter exactly; the message says why."""


@dataclass(frozen=True)
class LoraWeights:
    """One adapted linear module: A [r, in], B [out, r] and the scale s."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float


@dataclass(frozen=True)
class Adapter:
    """One adapter's weights by module name (as in the model: `model.layers.0.mlp.up_proj`)."""

    name: str
    modules: dict[str, LoraWeights]


def load_adapter(folder: Path, module_names: Iterable[str], name: str = "default") -> Adapter:
    """Read a peft LoRA adapter for a model with these linear module names."""
    config = json.loads((folder / "adapter_config.json").read_text())
    _check_config(config)
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    names = list(module_names)
    targeted = {m for m in names if targets(config, m)}
    weights = _by_module(tensors)
    if set(weights) != targeted:
        raise AdapterUnsupported(
            f"the adapter's tensors ({sorted(set(weights) - targeted)[:3]} extra, "
            f"{sorted(targeted - set(weights))[:3]} missing) differ from its target_modules")
    return Adapter(name, {module: _weights(config, module, *pair)
                          for module, pair in weights.items()})


def _check_config(config: dict[str, Any]) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterUnsupported(f"peft type {config.get('peft_type')!r} is not LoRA")
    if config.get("bias", "none") != "none":
        raise AdapterUnsupported(f"bias={config['bias']!r} is not computed natively")
    for key, default in _INEXACT.items():
        if config.get(key, default) not in (default, [], {}):
            raise AdapterUnsupported(f"{key}={config[key]!r} is not computed natively")


def targets(config: dict[str, Any], module: str) -> bool:
    """Whether peft puts a LoRA on this module (peft's `check_target_module_exists`)."""
    excluded = config.get("exclude_modules")
    if excluded:
        if isinstance(excluded, str):
            if re.fullmatch(excluded, module):
                return False
        elif module in excluded or any(module.endswith(f".{e}") for e in excluded):
            return False
    wanted = config.get("target_modules")
    if wanted is None:
        return False
    if isinstance(wanted, str):
        return re.fullmatch(wanted, module) is not None
    if module in wanted:
        return True
    if not any(module.endswith(f".{w}") for w in wanted):
        return False
    return _in_layers(config, module)


def _in_layers(config: dict[str, Any], module: str) -> bool:
    indexes = config.get("layers_to_transform")
    if indexes is None or (isinstance(indexes, list) and not indexes):
        return True
    pattern = config.get("layers_pattern")
    if not pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", module)
    else:
        match = None
        for p in [pattern] if isinstance(pattern, str) else pattern:
            match = re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", module)
            if match is not None:
                break
    if match is None:
        return False
    index = int(match.group("idx"))
    return index == indexes if isinstance(indexes, int) else index in indexes


def _by_module(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        match = re.fullmatch(rf"{re.escape(PREFIX)}(.+)\.lora_([AB])\.weight", key)
        if match is None:
            raise AdapterUnsupported(f"adapter tensor {key!r} is not a linear LoRA weight")
        (a if match.group(2) == "A" else b)[match.group(1)] = tensor
    if set(a) != set(b):
        raise AdapterUnsupported("the adapter's lora_A and lora_B modules differ")
    return {module: (a[module], b[module]) for module in a}


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    # peft's get_pattern_key: the first pattern matching a suffix of the module name.
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _weights(config: dict[str, Any], module: str, a: torch.Tensor,
             b: torch.Tensor) -> LoraWeights:
    rank = int(_pattern_value(config.get("rank_pattern") or {}, module, config.get("r", 8)))
    alpha = _pattern_value(config.get("alpha_pattern") or {}, module,
                           config.get("lora_alpha", 8))
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != rank or b.shape[1] != rank:
        raise AdapterUnsupported(f"{module}: LoRA shapes {tuple(a.shape)}, {tuple(b.shape)} "
                                 f"do not match rank {rank}")
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    # Fresh (64-byte aligned) copies: tensors read from a safetensors file sit at any 8-byte
    # offset, and the CPU matmul kernels round differently on unaligned data (not bit-equal
    # to peft, whose weights are allocated).
    return LoraWeights(a.to(torch.float32).clone(), b.to(torch.float32).clone(), scale)
