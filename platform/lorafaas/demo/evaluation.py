"""The evaluation's larger backbone: a random Llama of about 1 GB in float32, two adapters.

Built on demand by the evaluation only (tests/benchmarks/bench_evaluation.py), never by
./deploy/test or ./deploy/up, into its own folder under the models folder so the demo's
models stay as they are. Its adapters are seeded random LoRA adapters made with peft's API
(`random_adapter`), not trained ones: training on a backbone this size takes minutes per
adapter on two CPU cores, and the evaluation measures serving, not answers.
"""

from __future__ import annotations

from pathlib import Path

from lorafaas.demo.adapters import AdapterSpec
from lorafaas.demo.backbone import BackboneSpec
from lorafaas.demo.build import DemoModels, DemoSpec, build_demo_models

LARGE_DIRNAME = "evaluation-large"
MIN_BACKBONE_BYTES = 500 * 10**6  # what the evaluation's peak-memory target asks for
# 20 layers of hidden size 1024: about 260M parameters, 4 bytes each. Over the 500 MB the
# target asks for: with ~290 MB of libraries and runtime in every container, the backbone
# has to outweigh them before sharing it can cut a pool's memory 3× (real backbones, at
# 2-140 GB, outweigh them by far).
LARGE_BACKBONE = BackboneSpec(hidden_size=1024, num_hidden_layers=20, num_attention_heads=16,
                              num_key_value_heads=16, intermediate_size=2816)
RANDOM_ADAPTERS = tuple(AdapterSpec(name=f"random-{letter}", question_response="(random)",
                                    other_response="(random)", seed=300 + index, steps=0)
                        for index, letter in enumerate("ab"))


def large_spec() -> DemoSpec:
    """The larger backbone with random adapters."""
    return DemoSpec(backbone=LARGE_BACKBONE, adapters=RANDOM_ADAPTERS, random_adapters=True)


def build_large_models(models_dir: Path) -> DemoModels:
    """Build (or find) the larger backbone and its adapters under `models_dir`."""
    models = build_demo_models(models_dir / LARGE_DIRNAME, large_spec())
    size = (models.backbone_dir / "model.safetensors").stat().st_size
    if size < MIN_BACKBONE_BYTES:
        raise RuntimeError(f"the evaluation backbone is {size} bytes, under "
                           f"{MIN_BACKBONE_BYTES}: enlarge LARGE_BACKBONE")
    return models
