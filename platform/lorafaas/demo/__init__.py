"""Demo models for LoRAFaaS: a small random Llama backbone and style LoRA adapters.

Everything is generated locally and reproducibly (no Hugging Face hub access needed):
`build_demo_models(models_dir)` creates `demo-backbone/` and `demo-adapters/{pirate,shout}/`
under `models_dir`, or returns at once when an identical build is already there.
"""

from lorafaas.demo.build import DemoModels, DemoSpec, build_demo_models

__all__ = ["DemoModels", "DemoSpec", "build_demo_models"]
