"""Batched generation on the demo models: every request as if it had been generated alone.

The reference is peft's own `generate` of each request alone (greedy), on a model loaded
with `AutoModelForCausalLM.from_pretrained` + `PeftModel.from_pretrained`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

from lorafaas.runtime import profiler
from lorafaas.runtime.batched import generate_batch, iter_batch
from lorafaas.runtime.generation import GenerationRequest, generate

LONG_PROMPT = ("Tell me a story about a brave dragon who lived in a castle by the sea, "
               "who loved to sing to the sailors at night and to count the stars")
# Mixed prompt lengths (1 to 40 tokens), max_tokens, EOS handling and stop strings.
MIXED = (
    GenerationRequest("Hi", max_tokens=3),
    GenerationRequest("Can you explain how a rainbow forms?", max_tokens=40, ignore_eos=True),
    GenerationRequest(LONG_PROMPT, max_tokens=48, ignore_eos=True),
    GenerationRequest("Ünïcödé, emoji 🦜 and tabs\tplease.", max_tokens=30, stop=["!"]),
    GenerationRequest("x", max_tokens=1),
    GenerationRequest("What is the capital of France, and why?", max_tokens=25),
)
STOPS = (
    GenerationRequest("Can you explain how a rainbow forms?", max_tokens=30, stop=["matey"]),
    GenerationRequest("Open the door", max_tokens=30, stop=["ES", "Arr"]),
    GenerationRequest(LONG_PROMPT, max_tokens=30, stop=["never appears"], ignore_eos=True),
)


# Every test here on one torch thread (conftest.py says why).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["pirate", "shout"])
def model(request: pytest.FixtureRequest, demo_models: Any) -> PeftModel:
    """A float32 backbone with one demo adapter, unmerged, as peft loads it."""
    backbone = AutoModelForCausalLM.from_pretrained(demo_models.backbone_dir,
                                                    dtype=torch.float32)
    return PeftModel.from_pretrained(backbone, demo_models.adapters[request.param]).eval()


def peft_greedy(model: PeftModel, tokenizer: PreTrainedTokenizerBase,
                request: GenerationRequest) -> list[int]:
    """The request's new tokens from peft's generate of it alone."""
    inputs = tokenizer(request.prompt, return_tensors="pt")
    options: dict[str, Any] = {"max_new_tokens": request.max_tokens, "do_sample": False,
                               "pad_token_id": tokenizer.pad_token_id}
    if request.ignore_eos:
        options["min_new_tokens"] = request.max_tokens
    if request.stop:
        options.update(stop_strings=request.stop, tokenizer=tokenizer)
    with torch.inference_mode():
        output = model.generate(**inputs, **options)  # type: ignore[no-untyped-call]
    return output[0, inputs["input_ids"].shape[1]:].tolist()  # type: ignore[no-any-return]


def with_ids(requests: tuple[GenerationRequest, ...]) -> list[GenerationRequest]:
    """The requests asking for their token ids."""
    return [replace(r, return_token_ids=True) for r in requests]


@pytest.mark.parametrize("requests", [MIXED, STOPS, MIXED[:3]], ids=["mixed6", "stops3", "mixed3"])
def test_greedy_tokens_match_generation_alone(model: PeftModel,
                                              tokenizer: PreTrainedTokenizerBase,
                                              requests: tuple[GenerationRequest, ...]) -> None:
    """Each request's greedy tokens equal peft's generate of that request alone."""
    batch = with_ids(requests)
    results = generate_batch(model, tokenizer, batch)
    for request, (result, _) in zip(batch, results, strict=True):
        assert result["token_ids"] == peft_greedy(model, tokenizer, request), request.prompt


def test_results_equal_the_single_request_path(model: PeftModel,
                                               tokenizer: PreTrainedTokenizerBase) -> None:
    """Text, finish reason and usage are what the runtime's one-request path returns."""
    batch = with_ids(MIXED + STOPS)
    results = generate_batch(model, tokenizer, batch)
    for request, (result, timings) in zip(batch, results, strict=True):
        assert result == generate(model, tokenizer, request)[0], request.prompt
        assert set(timings) == {"ttft", "prefill", "decode", "total", "compute"}
    reasons = [result["finish_reason"] for result, _ in results]
    assert reasons[1:3] == ["length", "length"] and reasons[3] == "stop"
    assert "!" not in results[3][0]["text"]


def test_short_request_is_reported_before_the_long_one_ends(
        model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """A request that ends early comes out of the batch while the long one still decodes."""
    requests = [GenerationRequest(LONG_PROMPT, max_tokens=40, ignore_eos=True),
                GenerationRequest("Hi", max_tokens=2, ignore_eos=True)]
    finished = list(iter_batch(model, tokenizer, requests))
    assert [f.index for f in finished] == [1, 0]
    short, long = finished[0].timings, finished[1].timings
    assert short["ttft"] == long["ttft"]  # one prefill for the whole batch
    assert short["total"] < long["total"]
    # Billing shares: the long prompt pays most of the prefill and alone the later steps.
    assert 0 < short["compute"] < long["compute"]
    assert short["compute"] + long["compute"] <= long["total"]
    assert finished[0].result["usage"]["completion_tokens"] == 2


def test_finished_rows_leave_the_batch(model: PeftModel,
                                       tokenizer: PreTrainedTokenizerBase) -> None:
    """Each forward runs only the rows still decoding."""
    rows_per_forward: list[int] = []
    embed = model.get_input_embeddings()
    hook = embed.register_forward_pre_hook(
        lambda _module, args: rows_per_forward.append(int(args[0].shape[0])))
    try:
        generate_batch(model, tokenizer, [
            GenerationRequest("a", max_tokens=1, ignore_eos=True),
            GenerationRequest("bb", max_tokens=3, ignore_eos=True),
            GenerationRequest("ccc", max_tokens=5, ignore_eos=True)])
    finally:
        hook.remove()
    assert rows_per_forward == [3, 2, 2, 1, 1]


def test_seeded_sampling_ignores_batch_mates(model: PeftModel,
                                             tokenizer: PreTrainedTokenizerBase) -> None:
    """A seeded sample is the same alone or batched; different seeds differ."""
    def sampled(seed: int) -> GenerationRequest:
        return GenerationRequest("Can you explain how a rainbow forms?", max_tokens=16,
                                 temperature=1.5, top_p=0.95, seed=seed)

    alone = [generate_batch(model, tokenizer, [sampled(s)])[0][0]["text"] for s in (1, 2, 3)]
    mates = [GenerationRequest("Hi", max_tokens=5), sampled(2),
             GenerationRequest(LONG_PROMPT, max_tokens=20, temperature=1.0)]
    assert generate_batch(model, tokenizer, mates)[1][0]["text"] == alone[1]
    assert len(set(alone)) > 1


def test_empty_batch(model: PeftModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """No requests, no results."""
    assert generate_batch(model, tokenizer, []) == []


def test_profiler_fits_measured_prefill(demo_models: Any, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The profiler measures every batch size, prints the fit and R², writes JSON."""
    output = tmp_path / "profile.json"
    code = profiler.main(["--backbone", str(demo_models.backbone_dir),
                          "--adapter", str(demo_models.adapters["pirate"]),
                          "--prompt-lengths", "8", "--max-batch", "4", "--repeats", "1",
                          "--json", str(output)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "adapter rank 8" in printed and "R² =" in printed
    report = json.loads(output.read_text())
    (profile,) = report["profiles"]
    assert [b for b, _ in profile["samples"]] == [1, 2, 3, 4]
    assert all(ms > 0 for _, ms in profile["samples"])
    assert profile["r2"] <= 1.0 and report["adapter_rank"] == 8
