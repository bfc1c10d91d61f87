"""The engine's rope frequencies are bit-equal to transformers' ROPE_INIT_FUNCTIONS."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers import AutoConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from lorafaas.runtime.engine.rope import inv_freq
from lorafaas.runtime.engine.spec import model_spec

BASE: dict[str, Any] = {"hidden_size": 256, "num_attention_heads": 4, "num_hidden_layers": 1,
                        "intermediate_size": 64, "vocab_size": 64, "pad_token_id": 0}
ROPES: list[tuple[str, dict[str, Any]]] = [
    ("llama", {"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}),
    ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                   "factor": 3.0}}),
    ("llama", {"max_position_embeddings": 128,
               "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0,
                                   "factor": 2.0}}),
    ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
                                   "factor": 32.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 8192}}),
    ("phi3", {"max_position_embeddings": 4096, "original_max_position_embeddings": 512,
              "partial_rotary_factor": 0.5,
              "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                  "short_factor": [1.0 + 0.05 * i for i in range(16)],
                                  "long_factor": [2.0 + 0.3 * i for i in range(16)]}}),
]


@pytest.mark.parametrize(("model_type", "extra"), ROPES,
                         ids=[r[1]["rope_parameters"]["rope_type"] for r in ROPES])
@pytest.mark.parametrize("seq_len", [None, 100, 5000])
def test_inv_freq_equals_transformers(model_type: str, extra: dict[str, Any],
                                      seq_len: int | None) -> None:
    config = AutoConfig.for_model(model_type, **{**BASE, **extra})
    rope = next(iter(model_spec(config.to_dict()).ropes.values()))
    kind = config.rope_parameters["rope_type"]
    want, want_scale = ROPE_INIT_FUNCTIONS[kind](config, None, seq_len=seq_len) \
        if kind != "default" else (None, 1.0)
    got, scale = inv_freq(rope, seq_len)
    if want is None:  # the default rope lives in each model's rotary class
        dim = rope.head_dim
        want = 1.0 / (500000.0 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    assert torch.equal(got, want)
    assert scale == want_scale
