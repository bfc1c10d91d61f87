"""Every listed family, in process: publish a real checkpoint as the backbone server does,
build the runtime's model on the published files, and generate as a function container
does (alone, batched, continuous; fp32 and bf16; shared and private copies): the greedy
tokens are peft's `PeftModel.from_pretrained(...).generate` in the same dtype.

The Docker suite (test_family_serving.py) runs a subset of the families end to end; this
one covers all of them at the runtime's own seams, without containers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from lorafaas.backbone.publisher import TmpfsPublisher
from lorafaas.backbone.server import load_backbone
from lorafaas.demo import families as F
from lorafaas.runtime.attach import build_backbone
from lorafaas.runtime.batched import generate_batch
from lorafaas.runtime.continuous import ContinuousEngine
from lorafaas.runtime.function import RuntimePaths, _load_general_tokenizer, _load_tokenizer
from lorafaas.runtime.generation import GenerationRequest, generate
from lorafaas.runtime.private_backbone import load_private_backbone, published_descriptor
from lorafaas.runtime.tokenizer import ServingTokenizer

MAX_TOKENS = 8
FAMILY_NAMES = sorted(F.FAMILIES)


@dataclass
class Published:
    """A family's checkpoint, its two adapters, and what the backbone server published."""

    family: F.Family
    checkpoint: Path
    adapters: list[Path]
    publish_dir: Path
    tokenizer: PreTrainedTokenizerBase  # the checkpoint's own, as a user loads it


def publish(checkpoint: Path, publish_dir: Path, dtype: str = "auto") -> dict[str, Any]:
    """What `python -m lorafaas.backbone.server` does before it serves."""
    from lorafaas.backbone.checkpoint import serving_dtype

    model = load_backbone(checkpoint, serving_dtype(checkpoint, dtype))
    return TmpfsPublisher(publish_dir).publish(model, checkpoint)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, one_thread: None
              ) -> dict[str, Published]:
    """Each family's checkpoint (tied and untied, fp32, some sharded, each tokenizer format)
    published, with two adapters of different ranks."""
    root = tmp_path_factory.mktemp("families")
    result = {}
    for index, name in enumerate(FAMILY_NAMES):
        family = F.FAMILIES[name]
        options = F.CheckpointOptions(sharded=index % 2 == 0,
                                      chat_template="config" if index % 3 == 0 else "jinja")
        checkpoint = F.make_checkpoint(family, root / name, options)
        adapters = [F.make_adapter(checkpoint, root / f"{name}-a{rank}", family, rank=rank,
                                   seed=rank) for rank in (4, 8)]
        publish(checkpoint, root / f"{name}-published")
        result[name] = Published(family, checkpoint, adapters, root / f"{name}-published",
                                 F.load_tokenizer(checkpoint))
    return result


def shared_model(item: Published, adapter: Path) -> PeftModel:
    """The function's model as a container with sharing on builds it."""
    base = build_backbone(published_descriptor(item.publish_dir), item.publish_dir)
    return PeftModel.from_pretrained(base, str(adapter), is_trainable=False).eval()


def runtime_tokenizer(item: Published, adapter: Path) -> ServingTokenizer:
    """The tokenizer a container serves with (from the published folder, no transformers)."""
    return _load_tokenizer(RuntimePaths(None, item.publish_dir, adapter))


def general_tokenizer(item: Published, adapter: Path) -> PreTrainedTokenizerBase:
    """The tokenizer the general path loads (transformers', from the published folder)."""
    return _load_general_tokenizer(RuntimePaths(None, item.publish_dir, adapter))


def requests(max_tokens: int = MAX_TOKENS) -> list[GenerationRequest]:
    return [GenerationRequest(p, max_tokens=max_tokens, ignore_eos=True, return_token_ids=True)
            for p in F.PROMPTS]


def reference(item: Published, adapter: Path, dtype: str = "float32") -> list[list[int]]:
    model = F.load_reference(item.checkpoint, adapter, dtype)
    return [F.greedy(model, item.tokenizer, p, MAX_TOKENS) for p in F.PROMPTS]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_feature_acts(published: dict[str, Published], name: str) -> None:
    """Switched off, the family's feature changes transformers' greedy output (or, for the
    monotonic final soft-capping, its logits): the checkpoints exercise it."""
    item = published[name]
    if not item.family.control:
        pytest.skip(f"{name} is the plain family: no feature to switch off")
    model = AutoModelForCausalLM.from_pretrained(str(item.checkpoint)).eval()
    control = F.control_model(item.checkpoint, item.family)
    if item.family.control_by_logits:
        inputs = item.tokenizer(F.PROMPTS[0], return_tensors="pt")
        with torch.inference_mode():
            capped, free = model(**inputs).logits, control(**inputs).logits
        cap = item.family.config["final_logit_softcapping"]
        assert capped.abs().max() <= cap < free.abs().max()
        return
    outputs = [F.greedy(model, item.tokenizer, p, MAX_TOKENS) for p in F.PROMPTS]
    assert outputs != [F.greedy(control, item.tokenizer, p, MAX_TOKENS) for p in F.PROMPTS]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_published_backbone_is_the_checkpoint(published: dict[str, Published], name: str
                                              ) -> None:
    """Tied weights are published once and mapped once; every buffer the runtime computes
    equals transformers' own; the published tokenizer encodes as the checkpoint's."""
    item = published[name]
    model = build_backbone(published_descriptor(item.publish_dir), item.publish_dir)
    expected = AutoModelForCausalLM.from_pretrained(str(item.checkpoint))
    if expected.config.tie_word_embeddings:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
        assert "lm_head.weight" not in _published_names(item.publish_dir)
    buffers = dict(expected.named_buffers())
    assert buffers.keys() == dict(model.named_buffers()).keys()
    for key, value in model.named_buffers():
        assert torch.equal(value, buffers[key]), key
    tokenizer = runtime_tokenizer(item, item.adapters[0])
    for prompt in F.PROMPTS:
        ids = item.tokenizer(prompt)["input_ids"]
        assert tokenizer(prompt)["input_ids"] == ids
        for skip in (True, False):
            assert tokenizer.decode(ids, skip_special_tokens=skip) == item.tokenizer.decode(
                ids, skip_special_tokens=skip)
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (item.tokenizer.eos_token_id,
                                                                item.tokenizer.pad_token_id)


def _published_names(publish_dir: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(publish_dir / "model.safetensors"), framework="pt") as handle:
        return set(handle.keys())


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_fp32_alone_batched_continuous_equal_peft(published: dict[str, Published], name: str
                                                  ) -> None:
    """Two adapters × three prompts: alone, batched and continuous greedy tokens are peft's."""
    item = published[name]
    for adapter in item.adapters:
        expected = reference(item, adapter)
        model, tokenizer = shared_model(item, adapter), general_tokenizer(item, adapter)
        alone = [generate(model, tokenizer, r)[0]["token_ids"] for r in requests()]
        assert alone == expected, "alone"
        batched = [result["token_ids"] for result, _ in generate_batch(model, tokenizer,
                                                                       requests())]
        assert batched == expected, "batched"
        assert continuous(model, tokenizer) == expected, "continuous"


def continuous(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """The requests through one continuous-batching engine, submitted at once."""
    engine = ContinuousEngine(model, tokenizer)
    try:
        futures = [engine.submit(request) for request in requests()]
        return [future.result(timeout=120)[0]["token_ids"] for future in futures]
    finally:
        engine.close()


@pytest.mark.parametrize("name", ["llama3", "qwen2", "gemma2", "gemma3", "phi3"])
def test_bf16_alone_equals_peft_bf16(published: dict[str, Published], name: str,
                                     tmp_path: Path) -> None:
    """A bfloat16 checkpoint is published in bfloat16 (half the fp32 bytes) and its greedy
    tokens alone are peft's in bfloat16."""
    item = published[name]
    checkpoint = F.make_checkpoint(item.family, tmp_path / "bf16",
                                   F.CheckpointOptions(dtype="bfloat16"))
    publish_dir = tmp_path / "published"
    descriptor = publish(checkpoint, publish_dir)
    assert descriptor["dtype"] == "bfloat16"
    fp32 = os.path.getsize(item.publish_dir / "model.safetensors")
    assert descriptor["bytes"] < 0.55 * fp32
    bf16 = Published(item.family, checkpoint, item.adapters, publish_dir, item.tokenizer)
    for adapter in item.adapters:
        model = shared_model(bf16, adapter)
        assert model.dtype == torch.bfloat16
        alone = [generate(model, general_tokenizer(bf16, adapter), r)[0]["token_ids"]
                 for r in requests()]
        assert alone == reference(bf16, adapter, "bfloat16")


def test_private_copy_answers_as_the_shared_one(published: dict[str, Published]) -> None:
    """Sharing off loads the published files into private memory: the same tokens."""
    item = published["qwen2"]
    base = load_private_backbone(item.publish_dir)
    model = PeftModel.from_pretrained(base, str(item.adapters[0]), is_trainable=False).eval()
    tokenizer = general_tokenizer(item, item.adapters[0])
    tokens = [generate(model, tokenizer, r)[0]["token_ids"] for r in requests()]
    assert tokens == reference(item, item.adapters[0])


def test_generation_config_eos_stops(published: dict[str, Published], tmp_path: Path) -> None:
    """An extra EOS id of generation_config.json stops generation alone and batched, where
    peft's generate stops."""
    item = published["llama3"]
    adapter = item.adapters[0]
    free = reference(item, adapter)[0]
    stop_id = next((t for i, t in enumerate(free) if i >= 1 and t not in free[:i]), free[0])
    checkpoint = F.make_checkpoint(item.family, tmp_path / "eos")
    F.set_extra_eos(checkpoint, stop_id)
    publish_dir = tmp_path / "published"
    publish(checkpoint, publish_dir)
    eos = Published(item.family, checkpoint, item.adapters, publish_dir, item.tokenizer)
    model, tokenizer = shared_model(eos, adapter), general_tokenizer(eos, adapter)
    peft_model = F.load_reference(checkpoint, adapter)
    longer = 2 * MAX_TOKENS
    expected = F.greedy(peft_model, item.tokenizer, F.PROMPTS[0], longer, ignore_eos=False)
    assert expected[-1] == stop_id and len(expected) < longer
    request = GenerationRequest(F.PROMPTS[0], max_tokens=longer, return_token_ids=True)
    alone = generate(model, tokenizer, request)[0]
    assert alone["token_ids"] == expected and alone["finish_reason"] == "stop"
    batched = generate_batch(model, tokenizer, [request])[0][0]
    assert batched["token_ids"] == expected and batched["finish_reason"] == "stop"


def test_chat_template_is_published(published: dict[str, Published]) -> None:
    """The model's chat template (file or tokenizer_config.json) reaches the runtime, and
    the runtime renders it (jinja2, no transformers) as transformers does."""
    messages = [{"role": "user", "content": "hello there"}]
    for item in published.values():
        expected = item.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        general = general_tokenizer(item, item.adapters[0])
        assert general.apply_chat_template(messages, tokenize=False,
                                           add_generation_prompt=True) == expected
        assert runtime_tokenizer(item, item.adapters[0]).render_chat(messages) == expected
        assert expected.startswith("<|user|> hello there")


def test_controller_counts_prompts_as_the_runtime(published: dict[str, Published]) -> None:
    """The controller's context check (tokenizers and jinja2, no torch) counts a prompt and
    a chat exactly as the runtime tokenizes them, for every tokenizer format."""
    from lorafaas.controller.context_length import PublishedTokenizer

    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": F.PROMPTS[1]}]
    for item in published.values():
        counter = PublishedTokenizer.load(item.publish_dir)
        runtime = runtime_tokenizer(item, item.adapters[0])
        rendered = runtime.render_chat(messages)
        assert counter.count(F.PROMPTS[0]) == len(runtime(F.PROMPTS[0])["input_ids"])
        assert counter.count_chat(messages) == len(runtime(rendered)["input_ids"])


def test_checkpoint_files_are_as_transformers_5_writes_them(published: dict[str, Published],
                                                            tmp_path: Path) -> None:
    """0600 files; shards with an index; each tokenizer format's own files; bf16 config."""
    llama, qwen2 = published["llama"], published["qwen2"]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in llama.checkpoint.iterdir())
    assert "model.safetensors.index.json" in {p.name for p in published["gemma"].checkpoint
                                              .iterdir()}
    assert {"tokenizer.model"} <= {p.name for p in llama.checkpoint.iterdir()}
    assert not (llama.checkpoint / "tokenizer.json").exists()
    assert {"vocab.json", "merges.txt", "added_tokens.json"} <= {
        p.name for p in qwen2.checkpoint.iterdir()}
    assert not (qwen2.checkpoint / "tokenizer.json").exists()
    assert (llama.publish_dir / "tokenizer.json").exists()
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in llama.publish_dir.iterdir())
    bf16 = F.make_checkpoint(llama.family, tmp_path / "bf16", F.CheckpointOptions(
        dtype="bfloat16", chat_template=None))
    assert json.loads((bf16 / "config.json").read_text())["dtype"] == "bfloat16"
    assert not (bf16 / "chat_template.jinja").exists()


async def test_an_architecture_that_cannot_be_built_is_refused_at_start(tmp_path: Path
                                                                        ) -> None:
    """The backbone server refuses it before serving, naming the architecture."""
    from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess

    checkpoint = tmp_path / "vision"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(
        {"model_type": "vit", "architectures": ["ViTModel"]}))
    server = BackboneServerProcess(BackboneEndpoint("vision", tmp_path / "s.sock",
                                                    tmp_path / "published"), checkpoint)
    with pytest.raises(RuntimeError, match=r"architecture ViTModel \(model type 'vit'\) "
                                           "cannot be served as a causal LM"):
        await server.start()
    assert not (tmp_path / "published").exists()
