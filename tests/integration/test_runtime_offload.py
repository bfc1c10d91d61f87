"""The runtime's offloading of a function's own tensors, in process on the demo models:
the adapter and cached buffers leave the model and come back giving the same tokens."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from lorafaas.runtime.function import LoadedFunction
from lorafaas.runtime.generation import GenerationRequest, generate
from lorafaas.runtime.offload import ACCELERATOR, HOST, ArtifactTiers

REQUEST = GenerationRequest("Can you explain how a rainbow forms?", max_tokens=12,
                            ignore_eos=True, return_token_ids=True)


# Every test here on one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_thread")


def load(demo_models: Any, name: str, device: str = "cpu") -> PeftModel:
    """The demo backbone with one adapter, unmerged."""
    backbone = AutoModelForCausalLM.from_pretrained(demo_models.backbone_dir,
                                                    dtype=torch.float32)
    backbone.to(torch.device(device))  # type: ignore[arg-type]
    return PeftModel.from_pretrained(backbone, demo_models.adapters[name]).eval()


def tokens(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Greedy tokens of the test request."""
    result, _ = generate(model, tokenizer, REQUEST)
    return list(result["token_ids"])


def own_bytes(model: PeftModel) -> int:
    """Bytes of the LoRA parameters and the non-persistent buffers, counted independently."""
    lora = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
               if "lora_" in n)
    buffers = sum(b.numel() * b.element_size() for n, b in model.named_buffers()
                  if n.endswith("inv_freq"))
    return lora + buffers


def test_offloaded_adapter_leaves_the_model_and_comes_back_identical(  # type: ignore[no-untyped-def]
        demo_models, tokenizer) -> None:
    model = load(demo_models, "pirate")
    before = tokens(model, tokenizer)
    expected_bytes = own_bytes(model)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    tiers = ArtifactTiers(model)
    assert tiers.bytes == expected_bytes and tiers.accelerator_bytes == expected_bytes

    moved = tiers.offload()
    assert (moved.moved, moved.bytes) == (HOST, expected_bytes) and moved.ms > 0
    assert tiers.tier == HOST and tiers.accelerator_bytes == 0
    # The model holds nothing of its own any more: a forward cannot run on stale weights.
    assert all(p.numel() == 0 for n, p in model.named_parameters() if "lora_" in n)
    assert all(b.numel() == 0 for n, b in model.named_buffers() if n.endswith("inv_freq"))
    assert tiers.offload().bytes == 0, "offloading twice moves nothing"

    back = tiers.restore()
    assert (back.moved, back.bytes) == (ACCELERATOR, expected_bytes) and back.ms > 0
    assert tiers.tier == ACCELERATOR and tiers.restore().bytes == 0
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            assert torch.equal(parameter, lora_before[name])
    assert tokens(model, tokenizer) == before


def test_backbone_weights_never_move(demo_models) -> None:  # type: ignore[no-untyped-def]
    model = load(demo_models, "shout")
    backbone = {n: p.data_ptr() for n, p in model.named_parameters() if "lora_" not in n}
    tiers = ArtifactTiers(model)
    tiers.offload()
    tiers.restore()
    assert {n: p.data_ptr() for n, p in model.named_parameters()
            if "lora_" not in n} == backbone


def test_a_run_on_an_offloaded_function_restores_first(demo_models, tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = load(demo_models, "shout")
    loaded = LoadedFunction(model, tokenizer, None, {}, {})  # type: ignore[arg-type]
    warm, warm_timings = loaded.run(REQUEST)
    assert "restore" not in warm_timings
    loaded.tiers.offload()
    result, timings = loaded.run(REQUEST)
    assert loaded.tiers.tier == ACCELERATOR
    assert result["token_ids"] == warm["token_ids"]
    assert timings["restore"] > 0 and timings["ttft"] >= timings["restore"]
    loaded.tiers.offload()
    batch = list(loaded.run_batch([REQUEST, REQUEST]))
    assert [r["token_ids"] for _, r, _ in batch] == [warm["token_ids"]] * 2
    assert all(t["restore"] > 0 for _, _, t in batch)


@pytest.mark.gpu
async def test_cuda_offload_on_an_attached_backbone_moves_only_the_functions_own(  # type: ignore[no-untyped-def]
        demo_models, tokenizer, short_dir) -> None:
    """As a container has it: the backbone served by a backbone server over CUDA IPC and
    attached here on a channel (no copy of the weights in this process), the adapter on
    it; offloading moves the adapter to pinned host memory and frees exactly its device
    memory, and restoring it gives the same tokens as a private copy."""
    from lorafaas.backbone.accelerator import CUDA_IPC, TransportChoice
    from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
    from lorafaas.runtime.attach import BackboneAttachment, build_backbone, published_tensors
    from lorafaas.wire.attach import exchange

    endpoint = BackboneEndpoint("demo", short_dir / "bb" / "attach.sock", short_dir / "pub")
    server = BackboneServerProcess(endpoint, demo_models.backbone_dir, "float32",
                                   transport=TransportChoice(CUDA_IPC, 0, "test"))
    await server.start()
    try:
        channel = short_dir / "c1" / "attach.sock"
        channel.parent.mkdir()
        assert (await exchange(endpoint.socket_path, {"op": "open", "channel": "c1",
                                                      "path": str(channel)}))["ok"]
        before_attach = torch.cuda.memory_allocated()
        attachment = BackboneAttachment(channel, "test")
        assert attachment.descriptor["transport"] == CUDA_IPC
        base = build_backbone(attachment.descriptor, endpoint.publish_dir,
                              published_tensors(attachment.descriptor, endpoint.publish_dir))
        # Only the rebuilt rotary buffers are this process's: the weights are the server's.
        assert torch.cuda.memory_allocated() - before_attach < 1024 * 1024
        model = PeftModel.from_pretrained(base, demo_models.adapters["pirate"]).eval()
        reference = load(demo_models, "pirate", device="cuda")
        expected = tokens(reference, tokenizer)
        assert tokens(model, tokenizer) == expected
        tiers = ArtifactTiers(model)
        allocated = torch.cuda.memory_allocated()
        moved = tiers.offload()
        assert moved.bytes == tiers.bytes > 0
        assert torch.cuda.memory_allocated() <= allocated - tiers.bytes
        assert all(t.is_pinned() for t in tiers._host or [])
        tiers.restore()
        assert tokens(model, tokenizer) == expected
        assert attachment.is_current()
    finally:
        await server.stop()
