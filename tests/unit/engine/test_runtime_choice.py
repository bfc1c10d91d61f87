"""The runtime chooses the native engine where it is exact, else the general path, and
says which served each request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from lorafaas.runtime.engine.choice import native_engine
from lorafaas.runtime.function import RuntimePaths, load_function
from lorafaas.runtime.generation import GenerationRequest
from tests.unit.engine import families as fam

PROMPT = "Tell me about the sea"


def test_demo_function_is_served_natively_and_equals_peft(demo_models: Any,
                                                           tmp_path: Path) -> None:
    from tests.integration.test_family_checkpoints import publish

    # A container reads what the backbone server published, never the checkpoint itself.
    publish(demo_models.backbone_dir, tmp_path / "published")
    adapter = next(iter(demo_models.adapters.values()))
    loaded = load_function(RuntimePaths(None, tmp_path / "published", adapter), "test")
    assert loaded.native is not None
    request = GenerationRequest(PROMPT, max_tokens=12, ignore_eos=True,
                                return_token_ids=True)
    result, timings = loaded.run(request)
    # The reference: peft on the same published weights (the native path loads neither).
    from peft import PeftModel

    from lorafaas.runtime.function import _load_general_tokenizer
    from lorafaas.runtime.private_backbone import load_private_backbone

    paths = RuntimePaths(None, tmp_path / "published", adapter)
    reference = PeftModel.from_pretrained(load_private_backbone(paths.backbone_dir),
                                          str(adapter), is_trainable=False).eval()
    inputs = _load_general_tokenizer(paths)(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        out = reference.generate(**inputs, max_new_tokens=12, min_new_tokens=12,
                                 do_sample=False)
    assert result["token_ids"] == out[0, inputs["input_ids"].shape[1]:].tolist()
    assert timings["engine"] == "native"
    batch = {i: (r, t) for i, r, t in loaded.run_batch([request, request])}
    assert [batch[i][0]["token_ids"] for i in (0, 1)] == [result["token_ids"]] * 2
    assert {t["engine"] for _, t in batch.values()} == {"native"}
    engine = loaded.continuous()
    try:
        joined, joined_timings = engine.submit(request).result(timeout=120)
    finally:
        engine.close()
    assert joined["token_ids"] == result["token_ids"]
    assert joined_timings["engine"] == "native"


def test_dora_adapter_takes_the_general_path(tmp_path: Path) -> None:
    base = fam.backbone("llama", torch.float32)
    folder = fam.save_adapter(base, "llama", tmp_path / "dora", seed=1, use_dora=True)
    fam.reference(base, folder)  # peft wraps `base`'s modules in place
    assert native_engine(base, fam.tokenizer(), folder, {2}) is None
    plain = fam.save_adapter(fam.backbone("llama", torch.float32), "llama", tmp_path / "p",
                             seed=1)
    other = fam.backbone("llama", torch.float32)
    assert native_engine(other, fam.tokenizer(), plain, {2}) is not None


def test_unknown_architecture_takes_the_general_path(tmp_path: Path) -> None:
    config = AutoConfig.for_model("gpt_neox", vocab_size=fam.VOCAB, hidden_size=32,
                                  intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2)
    model = AutoModelForCausalLM.from_config(config)
    assert native_engine(model, fam.tokenizer(), tmp_path, {2}) is None
