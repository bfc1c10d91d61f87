"""Which backbone modules a LoRA config targets, with which rank and scale (peft 0.21's rules).

Mirrors `peft.tuners.tuners_utils.check_target_module_exists` and `get_pattern_key`:
excluded modules and modules_to_save never get LoRA layers; a string target is fully
matched as a regex, a list entry names a module or a dotted suffix of one, and
`layers_to_transform` filters list targets by their layer index. Every regex is matched
with RE2 (see `patterns`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from lorafaas.adapters.config import ALL_LINEAR, LoraConfigView
from lorafaas.adapters.patterns import Pattern

# peft's default layer index: the first numbered path segment ("model.layers.3.mlp...").
_LAYER_INDEX = re.compile(r"^.*?\.[^.]*\.(?P<idx>\d+)\.")
OUTPUT_LAYER = "lm_head"


def is_embedding(module: str) -> bool:
    """Whether a 2-D backbone weight is an embedding table rather than a linear layer."""
    leaf = module.rsplit(".", 1)[-1]
    return "embed" in leaf or leaf in ("wte", "wpe")


def _names_match(names: list[str], module: str) -> bool:
    return module in names or any(module.endswith(f".{name}") for name in names)


def _matches(spec: Pattern | list[str], module: str) -> bool:
    if isinstance(spec, Pattern):
        return spec.fullmatch(module)
    return _names_match(spec, module)


def _in_layers(config: LoraConfigView, module: str) -> bool:
    if config.layers_to_transform is None:
        return True
    if config.layers_pattern:
        found = (re.match(rf"^(?:.*?\.)?{re.escape(p)}\.(?P<idx>\d+)\.", module)
                 for p in config.layers_pattern)
        match = next((m for m in found if m is not None), None)
    else:
        match = _LAYER_INDEX.match(module)
    return match is not None and int(match["idx"]) in config.layers_to_transform


def _saved(config: LoraConfigView, module: str) -> bool:
    return any(re.match(rf"(^|.*\.){re.escape(m)}($|\..*)", module)
               for m in config.modules_to_save)


def is_targeted(config: LoraConfigView, module: str) -> bool:
    """Whether peft would give `module` a LoRA layer under this config."""
    if _matches(config.excluded, module) or _saved(config, module):
        return False
    if isinstance(config.targets, Pattern) and config.targets.pattern.lower() == ALL_LINEAR:
        return not is_embedding(module) and module.rsplit(".", 1)[-1] != OUTPUT_LAYER
    if isinstance(config.targets, Pattern):
        return config.targets.fullmatch(module)
    return _names_match(config.targets, module) and _in_layers(config, module)


def targeted_modules(config: LoraConfigView, modules: Iterable[str]) -> list[str]:
    """The backbone modules that get LoRA layers, sorted."""
    return sorted(m for m in modules if is_targeted(config, m))


def _pattern_key(keys: Iterable[str], field: str, module: str) -> str | None:
    for key in keys:
        if Pattern(rf"(.*\.)?({key})", f"{field} key {key!r}").fullmatch(module):
            return key
    return None


def module_rank(config: LoraConfigView, module: str) -> int:
    """The rank peft gives `module` (rank_pattern, else r)."""
    key = _pattern_key(config.rank_pattern, "rank_pattern", module)
    return config.rank if key is None else config.rank_pattern[key]


def module_scale(config: LoraConfigView, module: str) -> float:
    """The scale s of y = xW + s·(xA)B for `module`: alpha / r, or alpha / √r with rsLoRA."""
    key = _pattern_key(config.alpha_pattern, "alpha_pattern", module)
    alpha = config.alpha if key is None else config.alpha_pattern[key]
    rank = module_rank(config, module)
    return abs(alpha) / (math.sqrt(rank) if config.use_rslora else rank)


def saved_module_owner(config: LoraConfigView, module: str) -> bool:
    """Whether `module` is one of modules_to_save (peft stores a full copy of its weight)."""
    return _names_match(config.modules_to_save, module)
