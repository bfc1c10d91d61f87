"""Adapters made with real peft against the demo backbone, and ways to spoil them.

Each test asks for the variants it needs: a LoRA config passed to `peft.get_peft_model`
over the demo backbone, saved with `save_pretrained`, so the files are exactly what peft
writes. torch and peft are imported only when a variant is first made.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

AdapterFiles = dict[str, bytes]


def make_peft_adapter(backbone_dir: Path, target: Path, save_embedding_layers: bool = False,
                      std: float = 0.01, **lora: Any) -> Path:
    """Save a fresh (seeded, untrained) peft LoRA adapter of the demo backbone in `target`:
    B (zero at peft's init) and any modules_to_save copy get noise of `std`, so that the
    adapter changes the output."""
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LlamaForCausalLM.from_pretrained(str(backbone_dir))
        torch.manual_seed(7)
        peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name or "lora_embedding_B" in name:  # else B is zero
                    torch.nn.init.normal_(parameter, std=std)
                elif "modules_to_save" in name:
                    parameter.add_(torch.randn_like(parameter) * std)
        peft_model.save_pretrained(str(target), save_embedding_layers=save_embedding_layers)
    return target


def files_of(folder: Path) -> AdapterFiles:
    """The files of an adapter folder by name."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def with_config(files: AdapterFiles, **changes: Any) -> AdapterFiles:
    """The adapter with fields of adapter_config.json changed (None values kept as null)."""
    config = json.loads(files["adapter_config.json"])
    return {**files, "adapter_config.json": json.dumps({**config, **changes}).encode()}


def with_tensors(files: AdapterFiles,
                 change: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                 ) -> AdapterFiles:
    """The adapter with its tensors passed through `change`."""
    from safetensors.numpy import load, save

    tensors = change(dict(load(files["adapter_model.safetensors"])))
    return {**files, "adapter_model.safetensors": save(tensors)}


def first(tensors: dict[str, np.ndarray], part: str) -> str:
    """The first tensor name containing `part` (say "lora_A")."""
    return min(n for n in tensors if part in n)


def set_value(part: str, value: float) -> Callable[[dict[str, np.ndarray]],
                                                     dict[str, np.ndarray]]:
    """A change that puts `value` in one element of the first `part` tensor."""
    def change(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = first(tensors, part)
        spoilt = tensors[name].copy()
        spoilt.flat[3] = value
        return {**tensors, name: spoilt}
    return change


def zip_files(files: AdapterFiles, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """The files zipped at the top level."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
