"""The native engine's greedy tokens equal peft's for every family it serves, in float32
(alone, batched with different prompt lengths, joining a running batch) and in bfloat16
(alone, and batched equal to peft's own batched generate), with a control per family that
fails when the family's own feature is switched off."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from lorafaas.runtime.engine.cache import KVCache
from lorafaas.runtime.engine.model import NativeModel, Step
from lorafaas.runtime.engine.serving import NativeEngine
from lorafaas.runtime.engine.spec import RopeSpec
from lorafaas.runtime.generation import GenerationRequest
from tests.unit.engine import families as fam

NEW_TOKENS = 12
# Their rope follows the longest row of a batch (as in transformers): batching changes rows.
BATCH_WIDE_ROPE = {"llama-dynamic", "phi3"}
FAMILY_NAMES = list(fam.FAMILIES)


@dataclasses.dataclass
class Case:
    """One family in one dtype: peft's model with two adapters, and the native engine."""

    family: str
    dtype: torch.dtype
    reference: PeftModel
    engine: NativeEngine
    tensors: dict[str, torch.Tensor]
    peft_alone: dict[tuple[str, str], list[int]] = dataclasses.field(default_factory=dict)


def _case(family: str, dtype: torch.dtype, folder: Path) -> Case:
    base = fam.backbone(family, dtype)
    first = fam.save_adapter(base, family, folder / "one", seed=1)
    second = fam.save_adapter(base, family, folder / "two", seed=2)
    tensors = fam.weights(base)  # before peft wraps the modules
    engine = NativeEngine(base.config.to_dict(), tensors, fam.tokenizer(), {2})
    engine.load_adapter(first, "one")
    engine.load_adapter(second, "two")
    reference = fam.reference(base, first)
    reference.load_adapter(str(second), adapter_name="two")
    reference.set_adapter("default")
    return Case(family, dtype, reference, engine, tensors)


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def cases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, Case]]:
    folder = tmp_path_factory.mktemp(str(request.param).split(".")[-1])
    yield {name: _case(name, request.param, folder / name) for name in FAMILY_NAMES}


def _request(prompt: str) -> GenerationRequest:
    return GenerationRequest(prompt, max_tokens=NEW_TOKENS, ignore_eos=True,
                             return_token_ids=True)


def _peft_alone(case: Case, adapter: str, prompt: str) -> list[int]:
    if (adapter, prompt) not in case.peft_alone:
        case.peft_alone[adapter, prompt] = _generate_alone(case, adapter, prompt)
    return case.peft_alone[adapter, prompt]


def _generate_alone(case: Case, adapter: str, prompt: str) -> list[int]:
    case.reference.set_adapter("default" if adapter == "one" else adapter)
    inputs = fam.tokenizer()(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = case.reference.generate(**inputs, max_new_tokens=NEW_TOKENS,
                                      min_new_tokens=NEW_TOKENS, do_sample=False,
                                      pad_token_id=3)
    return list(out[0, inputs["input_ids"].shape[1]:].tolist())


def _peft_batched(case: Case, prompts: list[str]) -> list[list[int]]:
    case.reference.set_adapter("default")
    inputs = fam.tokenizer()(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.inference_mode():
        out = case.reference.generate(**inputs, max_new_tokens=NEW_TOKENS,
                                      min_new_tokens=NEW_TOKENS, do_sample=False,
                                      pad_token_id=3)
    return [list(row) for row in out[:, inputs["input_ids"].shape[1]:].tolist()]


def _native_alone(engine: NativeEngine, adapter: str, prompt: str) -> list[int]:
    batch = engine.batch([_request(prompt)], adapters=[adapter])
    return _drain(batch)[0]


def _drain(batch: object, finished: list | None = None) -> dict[int, list[int]]:
    tokens: dict[int, list[int]] = {}
    done = list(finished) if finished is not None else batch.prefill()  # type: ignore[attr-defined]
    while True:
        for row in done:
            tokens[row.index] = row.tokens
        if not batch.rows:  # type: ignore[attr-defined]
            return tokens
        done = batch.step()  # type: ignore[attr-defined]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_alone_equals_peft(cases: dict[str, Case], family: str) -> None:
    case = cases[family]
    for adapter in ("one", "two"):
        for prompt in fam.PROMPTS:
            assert _native_alone(case.engine, adapter, prompt) == \
                _peft_alone(case, adapter, prompt), (adapter, prompt)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_batched_equals_peft(cases: dict[str, Case], family: str) -> None:
    case = cases[family]
    batch = case.engine.batch([_request(p) for p in fam.PROMPTS], adapters=["one"] * 3)
    got = _drain(batch)
    if case.dtype == torch.float32 and family not in BATCH_WIDE_ROPE:
        # Batching changes nothing a row sees: each equals peft alone.
        want = [_peft_alone(case, "one", p) for p in fam.PROMPTS]
    else:
        # bf16 rounds differently with padding (and a batch-wide rope is the batch's): the
        # reference is peft's own batch.
        want = _peft_batched(case, fam.PROMPTS)
    assert [got[i] for i in range(3)] == want


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_mixed_adapters_and_joining_equal_peft_alone(cases: dict[str, Case],
                                                     family: str) -> None:
    case = cases[family]
    if case.dtype != torch.float32:
        pytest.skip("joining is checked in float32, where batching changes no row")
    if family in BATCH_WIDE_ROPE:
        pytest.skip("a batch-wide rope changes with who joins")
    # A long request runs; two more (another adapter among them) join it after 3 steps.
    running = case.engine.batch([_request(fam.PROMPTS[2])], adapters=["one"])
    finished = running.prefill()
    for _ in range(3):
        finished += running.step()
    joining = case.engine.batch([_request(p) for p in fam.PROMPTS[:2]], first_index=1,
                                adapters=["two", "one"])
    finished += joining.prefill()
    running.absorb(joining)
    got = _drain(running, finished)
    assert got[0] == _peft_alone(case, "one", fam.PROMPTS[2])
    assert got[1] == _peft_alone(case, "two", fam.PROMPTS[0])
    assert got[2] == _peft_alone(case, "one", fam.PROMPTS[1])


def _without_bias(case: Case) -> NativeModel:
    tensors = {k: v for k, v in case.tensors.items() if not k.endswith("_proj.bias")}
    return NativeModel(case.engine.model.spec, tensors)


def _plain_rope(case: Case) -> NativeModel:
    spec = case.engine.model.spec
    ropes = {kind: RopeSpec("default", {"rope_theta": 10000.0}, r.head_dim,
                            r.max_position_embeddings) for kind, r in spec.ropes.items()}
    return NativeModel(dataclasses.replace(spec, ropes=ropes), case.tensors)


def _replaced(**changes: object) -> Callable[[Case], NativeModel]:
    def build(case: Case) -> NativeModel:
        spec = dataclasses.replace(case.engine.model.spec, **changes)  # type: ignore[arg-type]
        return NativeModel(spec, case.tensors)
    return build


def _no_window(case: Case) -> NativeModel:
    spec = case.engine.model.spec
    layers = tuple(dataclasses.replace(layer, window=None) for layer in spec.layers)
    return NativeModel(dataclasses.replace(spec, layers=layers), case.tensors)


def _same_local_rope(case: Case) -> NativeModel:
    spec = case.engine.model.spec
    ropes = {kind: spec.ropes["full_attention"] for kind in spec.ropes}
    return NativeModel(dataclasses.replace(spec, ropes=ropes), case.tensors)


def _no_recompute(case: Case) -> NativeModel:
    model = NativeModel(case.engine.model.spec, case.tensors)
    model.long_rope_from = -1
    return model


# Each family's own feature, switched off.
CONTROLS: dict[str, Callable[[Case], NativeModel]] = {
    "llama": _plain_rope, "llama-linear": _plain_rope, "llama-dynamic": _plain_rope,
    "mistral": _no_window, "qwen2": _without_bias, "qwen3": _replaced(qk_norm=False),
    "phi3": _no_recompute, "gemma": _replaced(embed_scale=None),
    "gemma2": _replaced(attn_softcap=None), "gemma3_text": _same_local_rope,
}
EXTRA_CONTROLS: dict[str, Callable[[Case], NativeModel]] = {
    "gemma": _replaced(norm_offset=False), "phi3": _plain_rope,
}


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_control_feature_off_differs_from_peft(cases: dict[str, Case], family: str) -> None:
    case = cases[family]
    if case.dtype != torch.float32:
        pytest.skip("controls run in float32")
    for control in [CONTROLS[family], *([EXTRA_CONTROLS[family]]
                                        if family in EXTRA_CONTROLS else [])]:
        engine = case.engine
        original = engine.model
        engine.model = control(case)
        for name in ("one", "two"):
            for linear_name, linear in original.linears().items():
                lora = linear.loras.get(name)
                if lora is not None:
                    engine.model.linears()[linear_name].loras[name] = lora
        try:
            outputs = [_native_alone(engine, "one", p) for p in fam.PROMPTS]
        finally:
            engine.model = original
        assert outputs != [_peft_alone(case, "one", p) for p in fam.PROMPTS], control


def _prefill_logits(model: NativeModel, ids: torch.Tensor, adapter: str) -> torch.Tensor:
    spec = model.spec
    cache = KVCache(spec.num_layers, 1, spec.num_kv_heads, spec.head_dim, ids.shape[1],
                    model.dtype, model.device)
    with torch.inference_mode():
        return model.forward(ids, Step(torch.arange(ids.shape[1])[None], adapter), cache)


@pytest.mark.parametrize("family", ["gemma2", "gemma3_text"])
def test_final_softcap_logits_equal_peft(cases: dict[str, Case], family: str) -> None:
    # Soft-capping is monotonic, so greedy tokens cannot show it: the logits do.
    case = cases[family]
    case.reference.set_adapter("default")
    ids = fam.tokenizer()(fam.PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        want = case.reference(input_ids=ids, logits_to_keep=1).logits[:, -1].float()
    assert torch.equal(_prefill_logits(case.engine.model, ids, "one"), want)
    uncapped = _replaced(final_softcap=None)(case)
    for name, linear in case.engine.model.linears().items():
        uncapped.linears()[name].loras.update(linear.loras)
    assert not torch.allclose(_prefill_logits(uncapped, ids, "one"), want, atol=1e-3)
