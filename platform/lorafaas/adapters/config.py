"""Read `adapter_config.json` as peft 0.21's `LoraConfig` would, refusing what it cannot load.

peft builds `LoraConfig(**config)` at load: a lowercase `peft_type` or an unknown `task_type`
is a KeyError there, a wrong type fails later in the first forward pass. Each field the
runtime depends on is checked here for its type and value, and features that would write
the shared backbone's weights at load (PiSSA-style initialisation, biases, DoRA, layer
replication, trainable tokens) are refused, since every function maps those weights
read-only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.adapters.archive import CONFIG_NAME
from lorafaas.adapters.patterns import Pattern
from lorafaas.errors import AdapterRejected

# peft's TaskType values; only causal language models generate text.
KNOWN_TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS",
                    "FEATURE_EXTRACTION")
SERVED_TASK_TYPE = "CAUSAL_LM"
# init_lora_weights values that only initialise A and B; the others (pissa, olora, corda,
# loftq, eva, ...) also rewrite the base layer's weight when the adapter is injected.
_PLAIN_INITS = (True, False, "gaussian", "orthogonal")
# Fields whose value, when set, asks for something a shared read-only backbone cannot do.
_UNSERVED = {
    "use_dora": "DoRA adapters are not served",
    "lora_bias": "LoRA biases are not served",
    "use_qalora": "QA-LoRA adapters are not served",
    "layer_replication": "layer replication changes the backbone's structure",
    "target_parameters": "LoRA on parameters (target_parameters) is not served",
    "trainable_token_indices": "trainable tokens rewrite the backbone's embedding",
    "alora_invocation_tokens": "activated LoRA (aLoRA) is not served",
    "megatron_config": "Megatron adapters are not served",
    "use_bdlora": "block-diagonal LoRA is not served",
    "arrow_config": "Arrow routing between adapters is not served",
    "monteclora_config": "MonteCLoRA adapters are not served",
    "velora_config": "VeLoRA adapters are not served",
    "kasa_config": "KaSA adapters are not served",
}
# A module name as modules_to_save and layers_pattern give it (peft puts them in a regex).
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class LoraConfigView:
    """The fields of a LoRA config that decide which modules get which tensors, checked."""

    raw: dict[str, Any]
    rank: int
    alpha: float
    use_rslora: bool
    targets: Pattern | list[str]  # a regex fully matched, or names (exact or a dotted suffix)
    excluded: Pattern | list[str]
    modules_to_save: list[str]
    layers_to_transform: list[int] | None
    layers_pattern: list[str]
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]

    def target_names(self) -> list[str]:
        """The targets as the config names them (for messages and the action's summary)."""
        if isinstance(self.targets, Pattern):
            return [self.targets.pattern]
        return sorted(self.targets)


def read_config(path: Path) -> LoraConfigView:
    """Parse and check `adapter_config.json`, or raise AdapterRejected naming the field."""
    try:
        config = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise AdapterRejected(f"{CONFIG_NAME} is not valid JSON: {error}") from error
    if not isinstance(config, dict):
        raise AdapterRejected(f"{CONFIG_NAME} must hold a JSON object")
    _check_kind(config)
    _check_unserved(config)
    _check_loaded_fields(config)
    return LoraConfigView(
        raw=config, rank=_rank(config.get("r", 8), "r"),
        alpha=_number(config.get("lora_alpha", 8), "lora_alpha"),
        use_rslora=_flag(config, "use_rslora"),
        targets=_modules(config.get("target_modules"), "target_modules", required=True),
        excluded=_modules(config.get("exclude_modules"), "exclude_modules", required=False),
        modules_to_save=_plain_names(config.get("modules_to_save"), "modules_to_save"),
        layers_to_transform=_layers(config.get("layers_to_transform")),
        layers_pattern=_plain_names(config.get("layers_pattern"), "layers_pattern"),
        rank_pattern={key: _rank(value, f"rank_pattern[{key!r}]") for key, value
                      in _mapping(config.get("rank_pattern"), "rank_pattern").items()},
        alpha_pattern={key: _number(value, f"alpha_pattern[{key!r}]") for key, value
                       in _mapping(config.get("alpha_pattern"), "alpha_pattern").items()})


def _check_kind(config: dict[str, Any]) -> None:
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise AdapterRejected(f"{CONFIG_NAME} has peft_type {peft_type!r}; only \"LORA\" "
                              "adapters are served (peft spells it in capitals)")
    task_type = config.get("task_type")
    if task_type is not None and task_type not in KNOWN_TASK_TYPES:
        raise AdapterRejected(f"{CONFIG_NAME} has an unknown task_type {task_type!r}; peft "
                              f"knows {', '.join(KNOWN_TASK_TYPES)}")
    if task_type not in (None, SERVED_TASK_TYPE):
        raise AdapterRejected(f"{CONFIG_NAME} has task_type {task_type!r}; only "
                              f"{SERVED_TASK_TYPE} adapters generate text")


def _check_unserved(config: dict[str, Any]) -> None:
    for field, reason in _UNSERVED.items():
        if config.get(field) not in (None, False, [], {}):
            raise AdapterRejected(f"{CONFIG_NAME} sets {field}: {reason}")
    if config.get("bias", "none") != "none":
        raise AdapterRejected(f"{CONFIG_NAME} has bias {config.get('bias')!r}: only \"none\" "
                              "is served (bias tensors would overwrite the shared backbone's)")
    init = config.get("init_lora_weights", True)
    if not any(init is value or (isinstance(init, str) and init == value)
               for value in _PLAIN_INITS):
        raise AdapterRejected(f"{CONFIG_NAME} has init_lora_weights {init!r}, which rewrites "
                              "the backbone's weights when the adapter is loaded; use true")


def _check_loaded_fields(config: dict[str, Any]) -> None:
    # peft builds nn.Dropout(lora_dropout) for every layer, which fails on anything but a
    # probability; the flags are read as booleans.
    dropout = config.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, int | float) or \
            not 0.0 <= dropout <= 1.0:
        raise AdapterRejected(f"{CONFIG_NAME}: lora_dropout must be a number between 0 and 1, "
                              f"not {_shown(dropout)}")
    for flag in ("fan_in_fan_out", "inference_mode", "ensure_weight_tying"):
        _flag(config, flag)


def _rank(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AdapterRejected(f"{CONFIG_NAME}: {field} must be a positive integer, "
                              f"not {value!r}")
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        raise AdapterRejected(f"{CONFIG_NAME}: {field} must be a finite number, not {value!r}")
    return float(value)


def _flag(config: dict[str, Any], field: str) -> bool:
    value = config.get(field, False)
    if not isinstance(value, bool):
        raise AdapterRejected(f"{CONFIG_NAME}: {field} must be true or false, not {value!r}")
    return value


def _modules(value: Any, field: str, required: bool) -> Pattern | list[str]:
    if value is None and not required:
        return []
    if isinstance(value, str) and value:
        return Pattern(value, f"{CONFIG_NAME}: {field}")
    if isinstance(value, list) and (value or not required) and \
            all(isinstance(name, str) and name for name in value):
        return list(value)
    raise AdapterRejected(f"{CONFIG_NAME}: {field} must be a regular expression or a list of "
                          f"module names, not {_shown(value)}")


def _plain_names(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and _PLAIN_NAME.match(n)
                                              for n in names):
        raise AdapterRejected(f"{CONFIG_NAME}: {field} must be a list of module names "
                              f"(letters, digits, '_' and '.'), not {_shown(value)}")
    return list(names)


def _layers(value: Any) -> list[int] | None:
    if value is None or value == []:
        return None
    layers = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(layers, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers):
        raise AdapterRejected(f"{CONFIG_NAME}: layers_to_transform must be a layer index or a "
                              f"list of them, not {_shown(value)}")
    return layers


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdapterRejected(f"{CONFIG_NAME}: {field} must be an object, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
