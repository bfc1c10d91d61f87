"""Validation refuses, naming the field or tensor, every adapter peft would not load as written.

The adapters are made with real peft against the demo backbone (see tests.adapter_cases);
each case spoils one thing and expects the refusal to name it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lorafaas.adapters.validation import backbone_linear_shapes, validate_adapter
from lorafaas.errors import AdapterRejected
from tests.adapter_cases import (
    AdapterFiles,
    files_of,
    first,
    make_peft_adapter,
    set_value,
    with_config,
    with_tensors,
)

ATTENTION = ["q_proj", "v_proj"]


@pytest.fixture(scope="module")
def backbone(demo_models) -> dict[str, list[int]]:  # type: ignore[no-untyped-def]
    """The demo backbone's module shapes."""
    return backbone_linear_shapes(demo_models.backbone_dir)


@pytest.fixture(scope="module")
def made(demo_models, tmp_path_factory) -> dict[str, AdapterFiles]:  # type: ignore[no-untyped-def]
    """Adapters saved by peft: plain, regex targets, an embedding, modules_to_save."""
    root = tmp_path_factory.mktemp("peft")
    configs: dict[str, dict[str, Any]] = {
        "plain": {"r": 4, "target_modules": ATTENTION},
        "regex": {"r": 4, "target_modules": r".*\.[01]\.self_attn\.(q|v)_proj"},
        "embedding": {"r": 4, "target_modules": ["q_proj", "embed_tokens"]},
        "saved": {"r": 4, "target_modules": ["q_proj"], "modules_to_save": ["lm_head"]},
        "patterns": {"r": 4, "target_modules": ATTENTION, "rank_pattern": {"v_proj": 2},
                     "alpha_pattern": {"v_proj": 16}},
    }
    return {name: files_of(make_peft_adapter(demo_models.backbone_dir, root / name, **config))
            for name, config in configs.items()}


def check(tmp_path: Path, files: AdapterFiles, backbone: dict[str, list[int]]) -> Any:
    """Validate the adapter's files written to a folder."""
    folder = tmp_path / "adapter"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return validate_adapter(folder, backbone)


def refused(tmp_path: Path, files: AdapterFiles, backbone: dict[str, list[int]]) -> str:
    """The refusal's message."""
    with pytest.raises(AdapterRejected) as caught:
        check(tmp_path, files, backbone)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize("variant", ["plain", "regex", "embedding", "saved", "patterns"])
def test_adapters_peft_saves_are_accepted(variant: str, made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = check(tmp_path, made[variant], backbone)
    assert summary.module_count > 0


def test_pirate_demo_adapter_is_accepted(demo_models, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = check(tmp_path, files_of(demo_models.adapters["pirate"]), backbone)
    assert summary.rank == 8 and summary.module_count == 7 * 8


def test_stored_config_names_the_modules_a_regex_selected(made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = check(tmp_path, made["regex"], backbone)
    assert summary.config["target_modules"] == [
        "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]
    assert summary.target_modules == [r".*\.[01]\.self_attn\.(q|v)_proj"]


def test_rank_and_alpha_patterns_are_resolved_per_module(made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = check(tmp_path, made["patterns"], backbone).config
    assert config["rank_pattern"] == {rf"model\.layers\.{i}\.self_attn\.v_proj": 2
                                      for i in range(8)}
    assert set(config["alpha_pattern"].values()) == {16}


CONFIG_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "alpha-text": ({"lora_alpha": "abc"}, "lora_alpha must be a finite number"),
    "alpha-null": ({"lora_alpha": None}, "lora_alpha must be a finite number"),
    "r-bool": ({"r": True}, "r must be a positive integer"),
    "r-zero": ({"r": 0}, "r must be a positive integer"),
    "r-absurd": ({"r": 1_000_000}, "r 1000000 is larger than the smallest dimension"),
    "targets-number": ({"target_modules": 5}, "target_modules must be"),
    "targets-mixed": ({"target_modules": ["q_proj", 3]}, "target_modules must be"),
    "targets-bad-regex": ({"target_modules": "q_proj("}, "not a valid regular expression"),
    "targets-lookahead": ({"target_modules": "(?=.*q).*_proj"}, "cannot be matched in bounded"),
    "targets-none-match": ({"target_modules": "nothing.*"}, "selects no module"),
    "peft-type-lower": ({"peft_type": "lora"}, "peft_type 'lora'"),
    "peft-type-other": ({"peft_type": "PREFIX_TUNING"}, "peft_type 'PREFIX_TUNING'"),
    "task-unknown": ({"task_type": "TEXT_GEN"}, "unknown task_type 'TEXT_GEN'"),
    "task-other": ({"task_type": "SEQ_CLS"}, "task_type 'SEQ_CLS'"),
    "modules-to-save-empty": ({"modules_to_save": ["lm_head"]}, "modules_to_save names"),
    "modules-to-save-regex": ({"modules_to_save": ["lm.*"]}, "modules_to_save must be"),
    "rank-larger": ({"r": 16}, "rank r=16, but its tensors have rank 4"),
    "rank-smaller": ({"r": 2}, "rank r=2, but its tensors have rank 4"),
    "rank-pattern": ({"rank_pattern": {"q_proj": 8}}, "rank r=8, but its tensors have rank 4"),
    "dora": ({"use_dora": True}, "use_dora"),
    "bias": ({"bias": "all"}, "bias 'all'"),
    "pissa": ({"init_lora_weights": "pissa"}, "init_lora_weights 'pissa'"),
    "rslora-text": ({"use_rslora": "yes"}, "use_rslora must be true or false"),
    "layers-text": ({"layers_to_transform": "0"}, "layers_to_transform must be"),
    "dropout-text": ({"lora_dropout": "abc"}, "lora_dropout must be a number"),
    "dropout-above-one": ({"lora_dropout": 1.5}, "lora_dropout must be a number"),
    "flag-text": ({"fan_in_fan_out": "no"}, "fan_in_fan_out must be true or false"),
    "not-targeted": ({"target_modules": ["q_proj"]}, "does not target"),
    "layers-filtered": ({"layers_to_transform": [0]}, "does not target"),
    "excluded": ({"exclude_modules": ["v_proj"]}, "does not target"),
    "config-not-object": ({}, ""),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_configs_are_refused_naming_the_field(case: str, made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    changes, phrase = CONFIG_CASES[case]
    files = with_config(made["plain"], **changes)
    if case == "config-not-object":
        files = {**files, "adapter_config.json": b"[1, 2]"}
        phrase = "must hold a JSON object"
    assert phrase in refused(tmp_path, files, backbone)


def test_targeted_modules_without_tensors_are_refused(made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = with_config(made["plain"], target_modules=["q_proj", "v_proj", "k_proj"])
    assert "lack LoRA tensors" in refused(tmp_path, files, backbone)


def _renamed(old: str, new: str) -> Any:
    def change(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = first(tensors, old)
        return {**{k: v for k, v in tensors.items() if k != name},
                name.replace(old, new): tensors[name]}
    return change


def _added(name: str, shape: tuple[int, ...]) -> Any:
    return lambda tensors: {**tensors, name: np.zeros(shape, np.float32)}


def _rank_zero(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    a, b = first(tensors, "q_proj.lora_A"), first(tensors, "q_proj.lora_B")
    return {**tensors, a: tensors[a][:0].copy(), b: tensors[b][:, :0].copy()}


def _all_values(value: float) -> Any:
    def change(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = first(tensors, "lora_B")
        return {**tensors, name: np.full_like(tensors[name], value)}
    return change


TENSOR_CASES: dict[str, tuple[Any, str]] = {
    "nan": (set_value("lora_A", float("nan")), "NaN or infinite"),
    "inf": (set_value("lora_B", float("-inf")), "NaN or infinite"),
    "huge": (set_value("lora_B", 1e30), "magnitude 1e+30"),
    "overflowing": (_all_values(200.0), "too large"),
    "adapter-name-kept": (_renamed("lora_A.weight", "lora_A.default.weight"),
                          "never be loaded"),
    "unknown-name": (_added("base_model.model.model.norm.scale", (512,)), "not a LoRA key"),
    "absent-module": (_added("base_model.model.model.layers.0.mlp.fc9.lora_A.weight",
                             (4, 512)), "has no module"),
    "backbone-overwrite": (_added("base_model.model.model.layers.0.self_attn.q_proj"
                                  ".base_layer.weight", (512, 512)), "never be loaded"),
    "untargeted-module": (_added("base_model.model.model.layers.0.self_attn.k_proj"
                                 ".lora_A.weight", (4, 512)), "does not target"),
    "rank-zero": (_rank_zero, "rank 0"),
}


@pytest.mark.parametrize("case", sorted(TENSOR_CASES))
def test_bad_tensors_are_refused_naming_them(case: str, made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    change, phrase = TENSOR_CASES[case]
    message = refused(tmp_path, with_tensors(made["plain"], change), backbone)
    assert phrase in message, message


def test_lora_a_b_on_an_embedding_is_refused_naming_it(made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = with_tensors(made["embedding"], _renamed("lora_embedding_A", "lora_A.weight"))
    message = refused(tmp_path, files, backbone)
    assert "embed_tokens.lora_A.weight" in message and "is an embedding" in message


def test_saved_embedding_layer_is_refused(demo_models, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = make_peft_adapter(demo_models.backbone_dir, tmp_path / "saved-embedding",
                               save_embedding_layers=True, r=4,
                               target_modules=["q_proj", "embed_tokens"])
    message = refused(tmp_path, files_of(folder), backbone)
    assert "embed_tokens.base_layer.weight" in message


def test_bf16_adapters_are_streamed_and_checked(made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.numpy import load

    # numpy has no bfloat16: the upper halves of the float32 values, written by hand.
    tensors = load(made["plain"]["adapter_model.safetensors"])
    raw = {name: (t.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
           for name, t in tensors.items()}
    good = {**made["plain"], "adapter_model.safetensors": _bf16_file(raw)}
    assert check(tmp_path, good, backbone).module_count == 16
    name = first(raw, "lora_A")
    raw[name] = raw[name].copy()
    raw[name].flat[5] = 0x7FC0  # a bfloat16 NaN
    bad = {**made["plain"], "adapter_model.safetensors": _bf16_file(raw)}
    assert name in refused(tmp_path / "bad", bad, backbone)


def _bf16_file(raw: dict[str, np.ndarray]) -> bytes:
    # The safetensors layout by hand: an 8-byte header length, the JSON header, the data.
    header: dict[str, Any] = {}
    data = b""
    for name in sorted(raw):
        block = raw[name].astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(raw[name].shape),
                        "data_offsets": [len(data), len(data) + len(block)]}
        data += block
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + data


def test_a_catastrophic_regex_is_matched_in_linear_time(made, backbone, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Python's re takes seconds on 14 characters of a module name, doubling with each more.
    bomb = "(.*.*)*x_proj"
    started = time.monotonic()
    message = refused(tmp_path, with_config(made["plain"], target_modules=bomb), backbone)
    assert "selects no module" in message
    assert time.monotonic() - started < 60  # generous: RE2 takes milliseconds
