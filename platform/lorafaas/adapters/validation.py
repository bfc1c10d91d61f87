"""Check that a PEFT LoRA adapter fits a backbone and loads as written: config, tensors, values.

What peft 0.21 would refuse or silently drop at load is refused here, at create time:
a config it cannot build (see `config`), tensors it never loads (names that match no LoRA
key, modules the config does not target, A/B tensors on an embedding), targeted modules
or modules_to_save without tensors, ranks that differ from the config's, and shapes that
do not fit the backbone. The values are streamed (see `tensors`) and refused when not
finite or so large that the output overflows (see `MAX_MAGNITUDE`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafaas.adapters.archive import CONFIG_NAME, WEIGHTS_NAME
from lorafaas.adapters.config import LoraConfigView, read_config
from lorafaas.adapters.patterns import Pattern
from lorafaas.adapters.targets import (
    is_embedding,
    module_rank,
    module_scale,
    saved_module_owner,
    targeted_modules,
)
from lorafaas.adapters.tensors import FLOAT_DTYPES, TensorInfo, read_header, tensor_stats
from lorafaas.errors import AdapterRejected

# The keys peft's save_pretrained writes and set_peft_model_state_dict loads (the adapter
# name is left out of saved keys; a key that still holds one is never loaded).
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
_EMBEDDING_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_embedding_(?P<part>[AB])$")
_SAVED_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.weight$")
# The largest finite float16, 65504. An adapter is served in the backbone's dtype, which
# may be float16: every value must be representable there, and the delta a module adds
# for an input of unit RMS must stay below it too. For y = xW + s·(xA)B and ‖x‖₂ = √d_in,
# ‖Δy‖∞ ≤ ‖Δy‖₂ ≤ s·‖A‖_F·‖B‖_F·√d_in; trained adapters are orders of magnitude below
# (about 10³ for r=16 on a 4096-wide model), while a weight of 1e20, or many of 1e3,
# turns the logits into infinities and the text into nothing.
MAX_MAGNITUDE = 65504.0
_SHOWN = 5


@dataclass(frozen=True)
class AdapterSummary:
    """What validation learnt of an adapter: rank, alpha, target modules, size."""

    rank: int
    alpha: float
    target_modules: list[str]
    module_count: int
    # adapter_config.json with every pattern resolved to module names (see normalized_config).
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON form, kept in the action's annotations."""
        return {"rank": self.rank, "alpha": self.alpha, "targetModules": self.target_modules,
                "modules": self.module_count}


def read_tensor_shapes(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Names -> (dtype, shape) of a safetensors file, reading only its header."""
    return {name: (info.dtype, info.shape) for name, info in read_header(path).items()}


def backbone_linear_shapes(backbone_dir: Path) -> dict[str, list[int]]:
    """Module path -> [out, in] of every 2-D weight of a backbone (all its safetensors shards)."""
    shapes: dict[str, list[int]] = {}
    for shard in sorted(backbone_dir.glob("*.safetensors")):
        for name, (_, shape) in read_tensor_shapes(shard).items():
            if name.endswith(".weight") and len(shape) == 2:
                shapes[name.removesuffix(".weight")] = shape
    return shapes


@dataclass
class _Module:
    """The tensors found for one targeted module."""

    parts: dict[str, str] = field(default_factory=dict)  # "A"/"B" -> tensor name


def validate_adapter(adapter_dir: Path, backbone: Mapping[str, list[int]]) -> AdapterSummary:
    """Raise AdapterRejected naming the problem unless the adapter can run on the backbone."""
    config = read_config(adapter_dir / CONFIG_NAME)
    weights = adapter_dir / WEIGHTS_NAME
    tensors = read_header(weights)
    targeted = _targeted(config, backbone)
    _check_ranks(config, targeted, backbone)
    modules, saved = _classify(config, tensors, set(targeted), backbone)
    _check_complete(config, targeted, modules, saved)
    for module in targeted:
        _check_shapes(config, module, modules[module], tensors, backbone)
    _check_saved_shapes(saved, tensors, backbone)
    _check_values(config, weights, tensors, modules, backbone)
    return AdapterSummary(rank=config.rank, alpha=config.alpha,
                          target_modules=config.target_names(), module_count=len(targeted),
                          config=normalized_config(config, targeted))


def _targeted(config: LoraConfigView, backbone: Mapping[str, list[int]]) -> list[str]:
    leaf_names = sorted({module.rsplit(".", 1)[-1] for module in backbone})
    if isinstance(config.targets, list):
        for target in config.targets:
            if not any(m == target or m.endswith(f".{target}") for m in backbone):
                raise AdapterRejected(f"target module {target!r} does not exist in the backbone "
                                      f"(its layers are: {', '.join(leaf_names)})")
    targeted = targeted_modules(config, backbone)
    if not targeted:
        raise AdapterRejected(f"{CONFIG_NAME}: target_modules {config.target_names()} selects "
                              f"no module of the backbone (its layers are: "
                              f"{', '.join(leaf_names)})")
    return targeted


def _check_ranks(config: LoraConfigView, targeted: list[str],
                 backbone: Mapping[str, list[int]]) -> None:
    for module in targeted:
        rank, limit = module_rank(config, module), min(backbone[module])
        if rank > limit:
            raise AdapterRejected(f"{CONFIG_NAME}: r {rank} is larger than the smallest "
                                  f"dimension ({limit}) of the targeted module {module!r}; a "
                                  f"LoRA rank is at most min(in, out) of its layer")


def _classify(config: LoraConfigView, tensors: Mapping[str, TensorInfo], targeted: set[str],
              backbone: Mapping[str, list[int]]) -> tuple[dict[str, _Module], dict[str, str]]:
    """Sort tensors by the module they load into; refuse every tensor peft would not load."""
    modules: dict[str, _Module] = {m: _Module() for m in targeted}
    saved: dict[str, str] = {}
    unloaded: list[str] = []
    for name in sorted(tensors):
        lora, embedding, whole = (_LORA_KEY.match(name), _EMBEDDING_KEY.match(name),
                                  _SAVED_KEY.match(name))
        if lora and lora["module"] in targeted and not is_embedding(lora["module"]):
            modules[lora["module"]].parts[lora["part"]] = name
        elif embedding and embedding["module"] in targeted and is_embedding(embedding["module"]):
            modules[embedding["module"]].parts[embedding["part"]] = name
        elif whole and whole["module"] in backbone and saved_module_owner(config,
                                                                          whole["module"]):
            saved[whole["module"]] = name
        else:
            unloaded.append(_why_unloaded(name, lora or embedding, targeted, backbone))
    if unloaded:
        raise AdapterRejected(f"{len(unloaded)} tensor(s) would never be loaded: "
                              f"{_listed(unloaded)}")
    return modules, saved


def _why_unloaded(name: str, match: re.Match[str] | None, targeted: set[str],
                  backbone: Mapping[str, list[int]]) -> str:
    if ".base_layer." in name:
        return f"{name!r} (a backbone weight: the shared backbone is never overwritten)"
    if match is None:
        return f"{name!r} (not a LoRA key peft loads)"
    module = match["module"]
    if module not in backbone:
        return f"{name!r} (the backbone has no module {module!r})"
    if module not in targeted:
        return f"{name!r} (target_modules does not target {module!r})"
    if is_embedding(module):
        return f"{name!r} ({module!r} is an embedding: peft loads lora_embedding_A/B there)"
    return f"{name!r} ({module!r} is a linear layer: peft loads lora_A/B.weight there)"


def _check_complete(config: LoraConfigView, targeted: list[str], modules: dict[str, _Module],
                    saved: dict[str, str]) -> None:
    missing = [f"{m!r} ({'/'.join(sorted({'A', 'B'} - set(modules[m].parts)))})"
               for m in targeted if set(modules[m].parts) != {"A", "B"}]
    if missing:
        raise AdapterRejected(f"{len(missing)} targeted module(s) lack LoRA tensors (peft would "
                              f"fill them with fresh weights): {_listed(missing)}")
    unsaved = [m for m in config.modules_to_save
               if not any(s == m or s.endswith(f".{m}") for s in saved)]
    if unsaved:
        raise AdapterRejected(f"{CONFIG_NAME}: modules_to_save names {unsaved} but "
                              f"{WEIGHTS_NAME} holds no weight for them")


def _check_shapes(config: LoraConfigView, module: str, found: _Module,
                  tensors: Mapping[str, TensorInfo], backbone: Mapping[str, list[int]]) -> None:
    a, b = tensors[found.parts["A"]], tensors[found.parts["B"]]
    for info, name in ((a, found.parts["A"]), (b, found.parts["B"])):
        _check_float_matrix(name, info)
    out_features, in_features = backbone[module]
    if is_embedding(module):  # peft: A [r, num_embeddings], B [embedding_dim, r]
        out_features, in_features = in_features, out_features
    rank = a.shape[0]
    if rank == 0 or b.shape[1] == 0:
        raise AdapterRejected(f"the LoRA tensors of {module!r} have rank 0")
    if a.shape != [rank, in_features] or b.shape != [out_features, rank]:
        raise AdapterRejected(
            f"shapes of {module!r} do not fit the backbone: lora_A {a.shape} and lora_B "
            f"{b.shape}, expected [r, {in_features}] and [{out_features}, r]")
    expected = module_rank(config, module)
    if rank != expected:
        raise AdapterRejected(f"{CONFIG_NAME} gives {module!r} rank r={expected}, but its "
                              f"tensors have rank {rank}")


def _check_float_matrix(name: str, info: TensorInfo) -> None:
    if info.dtype not in FLOAT_DTYPES or len(info.shape) != 2:
        raise AdapterRejected(f"tensor {name!r} must be a 2-D float tensor, "
                              f"not {info.dtype} {info.shape}")


def _check_saved_shapes(saved: dict[str, str], tensors: Mapping[str, TensorInfo],
                        backbone: Mapping[str, list[int]]) -> None:
    for module, name in sorted(saved.items()):
        _check_float_matrix(name, tensors[name])
        if tensors[name].shape != backbone[module]:
            raise AdapterRejected(f"tensor {name!r} of modules_to_save has shape "
                                  f"{tensors[name].shape}; the backbone's {module!r} has "
                                  f"{backbone[module]}")


def _check_values(config: LoraConfigView, weights: Path, tensors: Mapping[str, TensorInfo],
                  modules: dict[str, _Module], backbone: Mapping[str, list[int]]) -> None:
    norms: dict[str, float] = {}
    for name in sorted(tensors):
        stats = tensor_stats(weights, tensors[name])
        if not stats.finite:
            raise AdapterRejected(f"tensor {name!r} holds NaN or infinite values")
        if stats.max_abs > MAX_MAGNITUDE:
            raise AdapterRejected(f"tensor {name!r} holds a value of magnitude "
                                  f"{stats.max_abs:.3g}, above {MAX_MAGNITUDE:g} (the largest "
                                  "float16): its output would overflow")
        norms[name] = stats.frobenius
    for module, found in sorted(modules.items()):
        width = 1 if is_embedding(module) else backbone[module][1]  # one-hot rows in
        gain = (module_scale(config, module) * norms[found.parts["A"]]
                * norms[found.parts["B"]] * math.sqrt(width))
        if gain > MAX_MAGNITUDE:
            raise AdapterRejected(
                f"the LoRA weights of {module!r} are too large: s·‖A‖·‖B‖·√d = {gain:.3g} "
                f"exceeds {MAX_MAGNITUDE:g} (the largest float16), so its output overflows")


def normalized_config(config: LoraConfigView, targeted: list[str]) -> dict[str, Any]:
    """The config as stored for the runtime: targets, ranks and scales by module name.

    peft would match a string target_modules and the pattern keys with Python's `re` at
    every container start; naming the modules validation resolved keeps a crafted pattern
    from ever running there, and means exactly what was validated.
    """
    escaped = {m: re.escape(m) for m in targeted}
    return {**config.raw, "target_modules": targeted, "exclude_modules": None,
            "layers_to_transform": None, "layers_pattern": None,
            "rank_pattern": {escaped[m]: module_rank(config, m) for m in targeted
                             if module_rank(config, m) != config.rank},
            "alpha_pattern": {escaped[m]: _alpha(config, m) for m in targeted
                              if _alpha(config, m) != config.alpha}}


def _alpha(config: LoraConfigView, module: str) -> float:
    key = next((k for k in config.alpha_pattern
                if Pattern(rf"(.*\.)?({k})", "alpha_pattern").fullmatch(module)), None)
    return config.alpha if key is None else config.alpha_pattern[key]


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} and {len(items) - _SHOWN} more"
