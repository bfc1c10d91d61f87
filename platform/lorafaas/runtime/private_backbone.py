"""Without backbone sharing: the container loads its own copy of the backbone.

What an OpenWhisk or InstaInfer function does on a cold start, and what the evaluation's
baselines run (`LORAFAAS_BACKBONE_SHARING=off`). The copy is read from what the backbone
server published (the same weights in the same serving dtype, the same generation config
and tokenizer, files containers may read), so both modes answer identically. It is read
into the process's private memory, not memory-mapped: a mapped file would share the host's
page cache between containers, which is backbone sharing by another name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load

from lorafaas.runtime.attach import build_backbone

if TYPE_CHECKING:
    from transformers import PreTrainedModel

MANIFEST_FILE = "manifest.json"  # written by the backbone server beside the weights


def published_descriptor(publish_dir: Path) -> dict[str, Any]:
    """The attach descriptor the backbone server wrote beside the weights it published."""
    descriptor: dict[str, Any] = json.loads((publish_dir / MANIFEST_FILE).read_text())[
        "descriptor"]
    return descriptor


def private_tensors(publish_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The published descriptor and weights, read into this process's own memory."""
    descriptor = published_descriptor(publish_dir)
    if descriptor["transport"] != "tmpfs":
        raise ValueError(f"a private copy needs published weights, not {descriptor['transport']}")
    return descriptor, load((publish_dir / descriptor["weights_file"]).read_bytes())


def load_private_backbone(publish_dir: Path) -> PreTrainedModel:
    """The published backbone loaded into this process's own memory (a transformers model)."""
    descriptor, tensors = private_tensors(publish_dir)
    return build_backbone(descriptor, publish_dir, tensors)
