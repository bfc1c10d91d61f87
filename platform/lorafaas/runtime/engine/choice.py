"""The runtime's choice of engine for a function: native where it computes exactly what peft
computes, else the general path (transformers + peft). No setting: the choice is automatic
and each result's timings say which served it (`engine`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lorafaas.runtime.engine.lora import AdapterUnsupported
from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.engine.spec import unsupported
from lorafaas.runtime.tokens import TextTokenizer

if TYPE_CHECKING:  # the native path chooses before transformers is imported (if ever)
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)
GENERAL = "general"


def native_engine(backbone: PreTrainedModel, tokenizer: TextTokenizer,
                  adapter_dir: Path, eos_ids: set[int]) -> NativeEngine | None:
    """The native engine on a transformers model's (mapped) tensors with this adapter."""
    # The model's own tensors: the mapped weights, not copies (tied names share one). Under
    # peft the base weights are `<module>.base_layer.weight` and the adapter's are beside.
    tensors = {name.replace(".base_layer.", "."): t.detach()
               for name, t in backbone.state_dict().items() if ".lora_" not in name}
    return native_engine_on(backbone.config.to_dict(), tensors, tokenizer, adapter_dir,
                            eos_ids)


def backbone_refusal(config: dict[str, Any], tensors: Mapping[str, torch.Tensor]) -> str | None:
    """Why the native engine cannot serve this backbone exactly, or None when it can."""
    reason = unsupported(config)
    weight = next(t for t in tensors.values() if t.is_floating_point())
    if reason is None and weight.device.type != "cpu":
        reason = "the native path is written for CPU tensors"
    if reason is None and torch.float16 == weight.dtype:
        reason = "float16 is served by the general path"
    return reason


def native_engine_on(config: dict[str, Any], tensors: Mapping[str, torch.Tensor],
                     tokenizer: TextTokenizer, adapter_dir: Path,
                     eos_ids: set[int]) -> NativeEngine | None:
    """The native engine on the backbone's config and (mapped) tensors with this adapter,
    or None (logged with the reason) when only the general path serves it exactly."""
    if (reason := backbone_refusal(config, tensors)) is not None:
        logger.info("general engine for %s: %s", adapter_dir.name, reason)
        return None
    try:
        engine = NativeEngine(config, tensors, tokenizer, eos_ids)
        engine.load_adapter(adapter_dir)
    except AdapterUnsupported as error:
        logger.info("general engine for %s: %s", adapter_dir.name, error)
        return None
    return engine
