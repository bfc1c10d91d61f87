"""Build the demo backbone: a small, randomly initialised Llama-architecture causal LM.

The weights are random (from a fixed seed) because the demo is about serving many LoRA
adapters over one shared backbone, not about the backbone's own quality; the architecture
and on-disk format are exactly those of a real Llama checkpoint, so the serving code paths
are the real ones.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from lorafaas.demo.tokenizer import save_tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneSpec:
    """Parameters that fully determine the demo backbone (besides the tokenizer)."""

    hidden_size: int = 512
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    intermediate_size: int = 1376
    max_position_embeddings: int = 2048
    seed: int = 20240611

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, used for the build's spec hash."""
        return asdict(self)


def make_config(spec: BackboneSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """Llama config whose vocabulary and special ids come from the tokenizer."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        # Untied, like the larger Llama checkpoints: the lm_head is a separate tensor to serve.
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )


def make_generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy-by-default generation config; explicit pad id avoids per-call warnings."""
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def build_backbone(spec: BackboneSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """Instantiate the backbone with seeded random float32 weights, in eval mode."""
    config = make_config(spec, tokenizer)
    # Seed right before construction: weight init is the only consumer of the RNG here.
    torch.manual_seed(spec.seed)
    # float() guards against a caller having changed torch's default dtype.
    model = LlamaForCausalLM(config).float()
    model.generation_config = make_generation_config(tokenizer)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    logger.info("built demo backbone with %.1fM parameters", params / 1e6)
    return model


def save_backbone(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, directory: Path
) -> None:
    """Write config, safetensors weights, generation config and tokenizer into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    save_tokenizer(tokenizer, directory)
