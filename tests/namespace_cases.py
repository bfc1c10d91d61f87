"""Eight adapters of one namespace, of different ranks and target modules, made with peft
against the demo backbone, and the greedy tokens peft gives each request alone."""

from __future__ import annotations

import os
from pathlib import Path

# Eight functions: ranks 1 to 32, each on its own set of modules.
CONFIGS: list[tuple[int, tuple[str, ...]]] = [
    (2, ("q_proj", "v_proj")),
    (4, ("q_proj", "k_proj", "v_proj", "o_proj")),
    (8, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    (16, ("gate_proj", "up_proj", "down_proj")),
    (1, ("o_proj",)),
    (8, ("down_proj",)),
    (32, ("k_proj", "up_proj")),
    (4, ("v_proj", "gate_proj")),
]
PROMPTS = ["Tell me about the sea", "hi", "Can you explain how a rainbow forms?",
           "Write a short poem about autumn leaves falling", "What is two plus two?",
           "ok", "Describe a busy market in the morning", "Why is the sky blue?"]
TOKENS = [12, 20, 9, 16, 24, 7, 14, 18]


def make_adapters(backbone_dir: Path, folder: Path) -> list[Path]:
    """Save the eight adapters (f0..f7) under `folder`, readable by a container's user."""
    from transformers import LlamaForCausalLM

    from lorafaas.demo.adapters import AdapterSpec, LoraSpec, random_adapter, save_adapter

    base = LlamaForCausalLM.from_pretrained(str(backbone_dir))
    made = []
    for index, (rank, targets) in enumerate(CONFIGS):
        spec = AdapterSpec(f"f{index}", "", "", seed=300 + index)
        model = random_adapter(base, spec, LoraSpec(r=rank, lora_alpha=2 * rank,
                                                    target_modules=targets))
        save_adapter(model, folder / f"f{index}")
        os.chmod(folder / f"f{index}", 0o755)
        for path in (folder / f"f{index}").iterdir():
            os.chmod(path, 0o644)  # transformers 5 writes 0600
        made.append(folder / f"f{index}")
    return made


def peft_tokens(backbone_dir: Path, adapters: list[Path]) -> list[list[int]]:
    """Each request's greedy tokens from `PeftModel.from_pretrained(backbone, adapter)`."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir))
    expected = []
    for index, adapter in enumerate(adapters):
        base = LlamaForCausalLM.from_pretrained(str(backbone_dir))
        model = PeftModel.from_pretrained(base, str(adapter))
        inputs = tokenizer(PROMPTS[index], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=TOKENS[index],
                                 min_new_tokens=TOKENS[index], do_sample=False)
        expected.append(out[0, inputs["input_ids"].shape[1]:].tolist())
    assert len({tuple(t) for t in expected}) == len(expected), "the adapters differ"
    return expected
