"""Check that a PEFT LoRA adapter fits a backbone: config, tensor names, ranks and shapes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from lorafaas.adapters.archive import CONFIG_NAME, WEIGHTS_NAME
from lorafaas.errors import AdapterRejected

# peft names adapter tensors `base_model.model.<module>.lora_A.weight` (and lora_B).
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?"
                       r"\.weight$")
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


@dataclass(frozen=True)
class AdapterSummary:
    """What validation learnt of an adapter: rank, alpha, target modules, size."""

    rank: int
    alpha: float
    target_modules: list[str]
    module_count: int

    def as_dict(self) -> dict[str, Any]:
        """JSON form, kept in the action's annotations."""
        return {"rank": self.rank, "alpha": self.alpha, "targetModules": self.target_modules,
                "modules": self.module_count}


def read_tensor_shapes(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Names -> (dtype, shape) of a safetensors file, reading only its header."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {name: (_dtype(handle, name), list(handle.get_slice(name).get_shape()))
                    for name in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError) as error:
        raise AdapterRejected(f"{path.name} is not a valid safetensors file: {error}") from error


def _dtype(handle: Any, name: str) -> str:
    return str(handle.get_slice(name).get_dtype())


def backbone_linear_shapes(backbone_dir: Path) -> dict[str, list[int]]:
    """Module path -> [out, in] of every 2-D weight of a backbone (all its safetensors shards)."""
    shapes: dict[str, list[int]] = {}
    for shard in sorted(backbone_dir.glob("*.safetensors")):
        for name, (_, shape) in read_tensor_shapes(shard).items():
            if name.endswith(".weight") and len(shape) == 2:
                shapes[name.removesuffix(".weight")] = shape
    return shapes


def validate_adapter(adapter_dir: Path, backbone: Mapping[str, list[int]]) -> AdapterSummary:
    """Raise AdapterRejected naming the problem unless the adapter can run on the backbone."""
    config = _read_config(adapter_dir / CONFIG_NAME)
    tensors = read_tensor_shapes(adapter_dir / WEIGHTS_NAME)
    modules = _pair_lora_tensors(tensors)
    targets = _target_modules(config)
    _check_targets_exist(targets, backbone)
    for module, (a_shape, b_shape) in sorted(modules.items()):
        _check_module(module, a_shape, b_shape, backbone)
    return AdapterSummary(rank=int(config["r"]), alpha=float(config.get("lora_alpha", config["r"])),
                          target_modules=targets, module_count=len(modules))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdapterRejected(f"{CONFIG_NAME} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise AdapterRejected(f"{CONFIG_NAME} must hold a JSON object")
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterRejected(f"{CONFIG_NAME} has peft_type {config.get('peft_type')!r}; "
                              "only LORA adapters are served")
    rank = config.get("r")
    if not isinstance(rank, int) or rank <= 0:
        raise AdapterRejected(f"{CONFIG_NAME} has no positive integer rank 'r'")
    return config


def _target_modules(config: Mapping[str, Any]) -> list[str]:
    targets = config.get("target_modules")
    if isinstance(targets, str):
        return [targets]
    if isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets):
        return sorted(targets)
    raise AdapterRejected(f"{CONFIG_NAME} names no target_modules")


def _check_targets_exist(targets: list[str], backbone: Mapping[str, list[int]]) -> None:
    leaf_names = {module.rsplit(".", 1)[-1] for module in backbone}
    for target in targets:
        if target in leaf_names or any(re.fullmatch(target, m) for m in backbone):
            continue
        raise AdapterRejected(f"target module {target!r} does not exist in the backbone "
                              f"(its linear layers are: {', '.join(sorted(leaf_names))})")


def _pair_lora_tensors(tensors: Mapping[str, tuple[str, list[int]]]
                       ) -> dict[str, tuple[list[int], list[int]]]:
    pairs: dict[str, dict[str, list[int]]] = {}
    for name, (dtype, shape) in tensors.items():
        match = _LORA_KEY.match(name)
        if match is None:
            raise AdapterRejected(f"tensor {name!r} is not a LoRA A/B weight; only LoRA "
                                  "weights can be served on a shared backbone")
        if dtype not in _FLOAT_DTYPES or len(shape) != 2:
            raise AdapterRejected(f"tensor {name!r} must be a 2-D float tensor, "
                                  f"not {dtype} {shape}")
        pairs.setdefault(match["module"], {})[match["part"]] = shape
    if not pairs:
        raise AdapterRejected(f"{WEIGHTS_NAME} holds no LoRA weights")
    for module, parts in pairs.items():
        if set(parts) != {"A", "B"}:
            raise AdapterRejected(f"module {module!r} has lora_A without lora_B or the reverse")
    return {module: (parts["A"], parts["B"]) for module, parts in pairs.items()}


def _check_module(module: str, a_shape: list[int], b_shape: list[int],
                  backbone: Mapping[str, list[int]]) -> None:
    if module not in backbone:
        raise AdapterRejected(f"the adapter targets {module!r}, which the backbone does not have")
    out_features, in_features = backbone[module]
    rank = a_shape[0]
    if a_shape != [rank, in_features] or b_shape != [out_features, rank]:
        raise AdapterRejected(
            f"shapes of {module!r} do not fit the backbone: lora_A {a_shape} and lora_B "
            f"{b_shape}, expected [r, {in_features}] and [{out_features}, r]")
