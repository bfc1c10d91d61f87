"""The checkpoint's generation config (`generation_config.json`), read as JSON: the EOS ids
generation always stops on, and the sampling defaults a deployment may ask to apply.

`LORAFAAS_GENERATION_DEFAULTS` (the invoker passes it to each container): `greedy`, the
default, keeps greedy decoding for a request that names no temperature; `checkpoint` takes
the checkpoint's `do_sample`, `temperature` and `top_p` as the defaults a request overrides.
The checkpoint's `top_k` and `repetition_penalty` are not applied: the runtime's samplers
have neither (a request cannot ask for them either).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

GENERATION_CONFIG = "generation_config.json"
GREEDY_DEFAULTS, CHECKPOINT_DEFAULTS = "greedy", "checkpoint"
DEFAULTS_CHOICES = (GREEDY_DEFAULTS, CHECKPOINT_DEFAULTS)


@dataclass(frozen=True)
class SamplingDefaults:
    """What a request that leaves them out samples with (temperature 0: greedy)."""

    temperature: float = 0.0
    top_p: float = 1.0


GREEDY = SamplingDefaults()


def read_generation_config(folder: Path) -> dict[str, Any]:
    """The folder's generation config ({} when it has none)."""
    path = folder / GENERATION_CONFIG
    if not path.exists():
        return {}
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def eos_ids(generation_config: dict[str, Any], model_config: dict[str, Any],
            tokenizer_eos: int | None) -> list[int]:
    """The ids generation stops on: the generation config's (all of them), else the model
    config's, else the tokenizer's EOS (the order transformers' `generate` follows)."""
    for configured in (generation_config.get("eos_token_id"), model_config.get("eos_token_id"),
                       tokenizer_eos):
        if configured is not None:
            return [int(i) for i in configured] if isinstance(configured, list) \
                else [int(configured)]
    return []


def sampling_defaults(mode: str, generation_config: dict[str, Any]) -> SamplingDefaults:
    """The defaults of requests under the deployment's `mode` (see the module doc)."""
    if mode not in DEFAULTS_CHOICES:
        raise ValueError(f"LORAFAAS_GENERATION_DEFAULTS must be greedy or checkpoint, "
                         f"not {mode!r}")
    if mode == GREEDY_DEFAULTS or not generation_config.get("do_sample"):
        return GREEDY
    temperature = float(generation_config.get("temperature", 1.0) or 0.0)
    top_p = float(generation_config.get("top_p", 1.0) or 1.0)
    # A request's range (runtime.request): the checkpoint's value is clamped into it.
    defaults = SamplingDefaults(min(max(temperature, 0.0), 2.0), min(max(top_p, 0.0), 1.0))
    ignored = [key for key in ("top_k", "repetition_penalty")
               if generation_config.get(key) not in (None, 0, 1, 1.0, 50)]
    if ignored:
        logger.info("the checkpoint's %s are not applied (not supported)", ignored)
    return defaults
