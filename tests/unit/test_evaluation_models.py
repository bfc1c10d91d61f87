"""The evaluation's larger backbone is specified apart from the demo's, which it leaves as is."""

from __future__ import annotations

from pathlib import Path

from lorafaas.demo.build import DemoSpec, demo_layout
from lorafaas.demo.evaluation import LARGE_DIRNAME, MIN_BACKBONE_BYTES, large_spec

# The demo's spec fingerprint before the evaluation's fields existed: a change would make
# every existing $LORAFAAS_HOME rebuild its demo models.
DEMO_FINGERPRINT_KEYS = {"demo_version", "tokenizer", "backbone", "lora", "adapters"}


def test_the_demo_spec_is_unchanged_by_the_random_adapters_option() -> None:
    assert set(DemoSpec().as_dict()) == DEMO_FINGERPRINT_KEYS
    assert large_spec().as_dict()["random_adapters"] is True
    assert large_spec().fingerprint() != DemoSpec().fingerprint()


def test_the_large_backbone_is_over_500_mb_in_float32() -> None:
    backbone = large_spec().backbone
    per_layer = (4 * backbone.hidden_size ** 2
                 + 3 * backbone.hidden_size * backbone.intermediate_size)
    # The layers alone, without the embeddings (whose size depends on the tokenizer).
    assert 4 * backbone.num_hidden_layers * per_layer >= MIN_BACKBONE_BYTES


def test_the_large_models_live_apart_from_the_demo(tmp_path: Path) -> None:
    demo = demo_layout(tmp_path, DemoSpec())
    large = demo_layout(tmp_path / LARGE_DIRNAME, large_spec())
    assert large.backbone_dir != demo.backbone_dir
    assert sorted(large.adapters) == ["random-a", "random-b"]
