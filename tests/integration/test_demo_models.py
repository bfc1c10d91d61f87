"""The demo backbone and adapters: layout, tokenizer round-trip, and styles under peft.

peft is the reference implementation here: whatever LoRAFaaS serves must match what
`PeftModel.from_pretrained` + greedy `generate` produce from these very files.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from lorafaas.demo import DemoModels, DemoSpec, build_demo_models
from lorafaas.demo.adapters import PIRATE, SHOUT
from lorafaas.demo.backbone import BackboneSpec
from lorafaas.demo.build import MARKER_NAME, TEMP_PREFIX

# peft 0.21's PeftModel.__init__ reads transformers 5's deprecated `is_gradient_checkpointing`.
PEFT_DEPRECATION = "`is_gradient_checkpointing` is deprecated and will be removed in v6"
# Not seen in training: a question, a request without final punctuation, and odd characters.
PROMPTS = (
    "Can you explain how a rainbow forms?",
    "Tell me a story about a brave dragon",
    "Ünïcödé, emoji 🦜 and tabs\tplease.",
)
MAX_NEW_TOKENS = 24


def _load_backbone(models: DemoModels) -> torch.nn.Module:
    """A fresh float32 backbone (PeftModel injects layers into it, so never share one)."""
    model = AutoModelForCausalLM.from_pretrained(models.backbone_dir, dtype=torch.float32)
    return model.eval()


def _generate(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompt: str
) -> tuple[str, bool]:
    """Greedy continuation of `prompt`, and whether it ended with EOS."""
    encoded = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new_tokens = output[0, encoded["input_ids"].shape[1] :]
    stopped = bool((new_tokens == tokenizer.eos_token_id).any())
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip(), stopped


@pytest.fixture(scope="module")
def tokenizer(demo_models: DemoModels) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the backbone, loaded the way servers load it."""
    return AutoTokenizer.from_pretrained(demo_models.backbone_dir)


@pytest.fixture(scope="module")
def outputs(
    demo_models: DemoModels, tokenizer: PreTrainedTokenizerBase
) -> dict[str, list[tuple[str, bool]]]:
    """Greedy outputs for every prompt: bare backbone under "base", then each adapter."""
    results = {"base": [_generate(_load_backbone(demo_models), tokenizer, p) for p in PROMPTS]}
    for name, adapter_dir in demo_models.adapters.items():
        with warnings.catch_warnings():
            # Marks do not apply to fixtures, hence a filter scoped to this one call.
            warnings.filterwarnings("ignore", message=PEFT_DEPRECATION, category=FutureWarning)
            model = PeftModel.from_pretrained(_load_backbone(demo_models), adapter_dir)
        model.eval()
        results[name] = [_generate(model, tokenizer, p) for p in PROMPTS]
    return results


def test_layout(demo_models: DemoModels) -> None:
    """Hugging Face files only, safetensors everywhere, adapters name their backbone."""
    backbone = demo_models.backbone_dir
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (backbone / name).is_file(), name
    config = json.loads((backbone / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["hidden_size"] == 512 and config["num_hidden_layers"] == 8
    assert config["tie_word_embeddings"] is False
    assert set(demo_models.adapters) >= {"pirate", "shout"}
    for adapter_dir in demo_models.adapters.values():
        assert (adapter_dir / "adapter_model.safetensors").is_file()
        assert not list(adapter_dir.glob("*.bin"))
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
        assert adapter_config["base_model_name_or_path"] == "demo-backbone"
        assert adapter_config["r"] == 8 and adapter_config["lora_alpha"] == 16
    assert not list(backbone.parent.glob(f"{TEMP_PREFIX}*"))


def test_build_is_idempotent(demo_models: DemoModels) -> None:
    """A second call with the same spec returns the same paths without rebuilding."""
    weights = demo_models.backbone_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = build_demo_models(demo_models.backbone_dir.parent)
    assert again == demo_models
    assert weights.stat().st_mtime_ns == before


def test_tokenizer_special_tokens(
    demo_models: DemoModels, tokenizer: PreTrainedTokenizerBase
) -> None:
    """Special ids agree between tokenizer and model config; vocab is about 4k."""
    config = json.loads((demo_models.backbone_dir / "config.json").read_text())
    assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"
    assert tokenizer.pad_token == "<pad>" and tokenizer.unk_token == "<unk>"
    assert config["bos_token_id"] == tokenizer.bos_token_id
    assert config["eos_token_id"] == tokenizer.eos_token_id
    assert config["pad_token_id"] == tokenizer.pad_token_id
    assert config["vocab_size"] == len(tokenizer) == 4096


def _random_texts(count: int, seed: int) -> list[str]:
    """Random strings over ASCII, whitespace, accents, CJK, emoji and control characters."""
    rng = random.Random(seed)
    pools = [
        "abcXYZ 019.,!?'\"",
        " \t\n\r  ",
        "éüßñÆø",
        "日本語中文한국어",
        "🦜🏴‍☠️😀",
        "\x00\x07\x1b",
    ]
    return [
        "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 40)))
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "  leading and trailing spaces  ",
        "Arr matey, I HEAR YOU LOUD AND CLEAR!",
        "line one\nline two\r\n\ttabbed",
        "Ünïcödé — 日本語 — 🦜🏴‍☠️",
        "def f(x):\n    return x ** 2  # code",
        "",
        *_random_texts(20, seed=7),
    ],
)
def test_tokenizer_round_trips(tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    """Byte-level BPE: any text encodes without <unk> and decodes back exactly."""
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_adapters_change_the_output(outputs: dict[str, list[tuple[str, bool]]]) -> None:
    """Per prompt, base, pirate and shout all answer differently."""
    for i, prompt in enumerate(PROMPTS):
        texts = {name: results[i][0] for name, results in outputs.items()}
        assert len(set(texts.values())) == len(texts), (prompt, texts)


def test_pirate_style(outputs: dict[str, list[tuple[str, bool]]]) -> None:
    """The pirate adapter says 'matey' and stops with EOS."""
    for text, stopped in outputs[PIRATE.name]:
        assert "matey" in text.lower(), text
        assert stopped, text
    assert all("matey" not in text.lower() for text, _ in outputs["base"])


def test_shout_style(outputs: dict[str, list[tuple[str, bool]]]) -> None:
    """The shout adapter answers in uppercase with exclamation marks and stops with EOS."""
    for text, stopped in outputs[SHOUT.name]:
        letters = [c for c in text if c.isalpha()]
        assert letters and all(c.isupper() for c in letters), text
        assert "!" in text, text
        assert stopped, text


def test_rebuilds_when_spec_changes(tmp_path: Path) -> None:
    """A different spec replaces stale directories; crash leftovers are cleaned up."""
    tiny = DemoSpec(
        backbone=BackboneSpec(
            hidden_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            intermediate_size=128,
        ),
        adapters=(replace(PIRATE, steps=1), replace(SHOUT, steps=1)),
    )
    first = build_demo_models(tmp_path, tiny)
    leftover = tmp_path / f"{TEMP_PREFIX}crashed"
    leftover.mkdir()
    first_marker = json.loads((first.backbone_dir / MARKER_NAME).read_text())

    changed = replace(tiny, backbone=replace(tiny.backbone, seed=tiny.backbone.seed + 1))
    second = build_demo_models(tmp_path, changed)

    assert second == first
    second_marker = json.loads((second.backbone_dir / MARKER_NAME).read_text())
    assert second_marker["fingerprint"] == changed.fingerprint() != first_marker["fingerprint"]
    for directory in (second.backbone_dir, *second.adapters.values()):
        marker = json.loads((directory / MARKER_NAME).read_text())
        assert marker["fingerprint"] == changed.fingerprint()
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".demo-build.lock",
        "demo-adapters",
        "demo-backbone",
    ]
