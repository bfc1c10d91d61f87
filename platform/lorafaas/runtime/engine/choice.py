"""The runtime's choice of engine for a function: native where it computes exactly what peft
computes, else the general path (transformers + peft). No setting: the choice is automatic
and each result's timings say which served it (`engine`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from lorafaas.runtime.engine.lora import AdapterUnsupported
from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.engine.spec import unsupported

logger = logging.getLogger(__name__)
GENERAL = "general"


def native_engine(backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  adapter_dir: Path, eos_ids: set[int]) -> NativeEngine | None:
    """The native engine on the backbone's (mapped) tensors with this adapter, or None
    (logged with the reason) when only the general path serves it exactly."""
    config: dict[str, Any] = backbone.config.to_dict()
    reason = unsupported(config)
    if reason is None and next(backbone.parameters()).device.type != "cpu":
        reason = "the native path is written for CPU tensors"
    if reason is None and torch.float16 == next(backbone.parameters()).dtype:
        reason = "float16 is served by the general path"
    if reason is not None:
        logger.info("general engine for %s: %s", adapter_dir.name, reason)
        return None
    # The model's own tensors: the mapped weights, not copies (tied names share one). Under
    # peft the base weights are `<module>.base_layer.weight` and the adapter's are beside.
    tensors = {name.replace(".base_layer.", "."): t.detach()
               for name, t in backbone.state_dict().items() if ".lora_" not in name}
    try:
        engine = NativeEngine(config, tensors, tokenizer, eos_ids)
        engine.load_adapter(adapter_dir)
    except AdapterUnsupported as error:
        logger.info("general engine for %s: %s", adapter_dir.name, error)
        return None
    return engine
