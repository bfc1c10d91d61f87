"""Small random checkpoints of each native family, with random peft adapters, for the tests."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerFast

from lorafaas.demo.tokenizer import TokenizerSpec, build_tokenizer

VOCAB = 384
COMMON: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB,
    "max_position_embeddings": 256, "pad_token_id": 3, "bos_token_id": 1, "eos_token_id": 2,
    "initializer_range": 0.3}
# Each family sized so its own feature acts on prompts plus outputs of about 20-40 tokens.
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {"rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 16}},
    "llama-linear": {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                         "factor": 4.0}},
    "llama-dynamic": {"max_position_embeddings": 16,
                      "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0,
                                          "factor": 2.0}},
    "mistral": {"sliding_window": 8, "head_dim": 16},
    "qwen2": {"tie_word_embeddings": True, "use_sliding_window": False},
    "qwen3": {"head_dim": 16, "tie_word_embeddings": True},
    "phi3": {"max_position_embeddings": 64, "original_max_position_embeddings": 10,
             "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                 "short_factor": [1.0 + 0.1 * i for i in range(8)],
                                 "long_factor": [4.0 + 4.0 * i for i in range(8)]},
             "partial_rotary_factor": 1.0},
    "gemma": {"head_dim": 16},
    "gemma2": {"head_dim": 16, "initializer_range": 0.02, "sliding_window": 8, "attn_logit_softcapping": 3.0,
               "final_logit_softcapping": 4.0, "query_pre_attn_scalar": 16,
               "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]},
    "gemma3_text": {"head_dim": 16, "initializer_range": 0.02, "sliding_window": 8, "query_pre_attn_scalar": 16,
                    "final_logit_softcapping": 4.0,
                    "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                    "rope_parameters": {
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                        "full_attention": {"rope_type": "default", "rope_theta": 10000.0}}},
}
TARGETS: dict[str, list[str]] = {"phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPTS = ["Hello there, how are you today?", "The sea",
           "A much longer prompt that goes on and on about ships, sails and the weather at sea"]


@lru_cache(maxsize=1)
def tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE trained locally (no hub)."""
    return build_tokenizer(TokenizerSpec(vocab_size=VOCAB, corpus_sentences=300))


def model_type(family: str) -> str:
    """The transformers model type of a test family name (llama-linear -> llama)."""
    return family.split("-")[0]


def backbone(family: str, dtype: torch.dtype) -> PreTrainedModel:
    """A random checkpoint of the family, in `dtype`, seeded."""
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type(family), **{**COMMON, **FAMILIES[family]})
    # As from_pretrained(dtype=...) builds it: computed buffers (rotary inv_freq) stay float32.
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:  # biases and norms start at 0 or 1: make them act
                parameter.add_(torch.randn_like(parameter) * 0.5)
    return model


def save_adapter(model: PreTrainedModel, family: str, folder: Path, seed: int,
                 **options: Any) -> Path:
    """A random (init_lora_weights=False) LoRA adapter on the model, saved to `folder`."""
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS.get(model_type(family),
                                                                     DEFAULT_TARGETS),
                        init_lora_weights=False, **options)
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(str(folder))
    peft_model.unload()
    return folder


def reference(base: PreTrainedModel, folder: Path) -> PeftModel:
    """peft's model for the adapter, as the general path loads it."""
    return PeftModel.from_pretrained(base, str(folder), is_trainable=False).eval()


def weights(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The backbone's tensors as the backbone server publishes them: tied pairs once."""
    seen: dict[int, str] = {}
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sorted(model.state_dict().items()):
        if tensor.data_ptr() in seen:
            continue
        seen[tensor.data_ptr()] = name
        out[name] = tensor.detach()
    return out
