"""Attach to the backbone server and build the backbone model on its published weights.

The model is built on the `meta` device (no memory), the published tensors are assigned
in place (no copy: the weights stay pages of the shared file or CUDA IPC memory), and the
buffers that are not weights (rotary `inv_freq`) are rebuilt.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from lorafaas.wire.attach import MAX_LINE, decode, encode


class BackboneAttachment:
    """An open attachment to the backbone server; it lasts as long as the connection."""

    def __init__(self, socket_path: Path, client: str) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(str(socket_path))
        self._file = self._socket.makefile("rwb")
        self._file.write(encode({"op": "attach", "client": client}))
        self._file.flush()
        answer = decode(self._file.readline(MAX_LINE))
        if not answer.get("ok"):
            raise RuntimeError(f"backbone server refused attach: {answer.get('error')}")
        self.descriptor: dict[str, Any] = answer["backbone"]

    def close(self) -> None:
        """Detach."""
        self._file.close()
        self._socket.close()


def backbone_config(descriptor: dict[str, Any]) -> PretrainedConfig:
    """The backbone's transformers config from the descriptor."""
    values = dict(descriptor["config"])
    return AutoConfig.for_model(values.pop("model_type"), **values)


def published_tensors(descriptor: dict[str, Any], backbone_dir: Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors, mapped from where the server published them."""
    if descriptor["transport"] == "tmpfs":
        # safetensors memory-maps the file: the tensors are views of shared page-cache pages.
        with safe_open(str(backbone_dir / descriptor["weights_file"]), framework="pt") as handle:
            # safe_open is not iterable: keys() is needed.
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    if descriptor["transport"] == "cuda-ipc":
        from lorafaas.wire.cuda_ipc import import_tensor

        return {name: import_tensor(entry) for name, entry in descriptor["tensors"].items()}
    raise ValueError(f"unknown backbone transport {descriptor['transport']!r}")


def build_backbone(descriptor: dict[str, Any], backbone_dir: Path) -> PreTrainedModel:
    """The backbone model whose weights are the published tensors, ready for inference."""
    config = backbone_config(descriptor)
    dtype = getattr(torch, descriptor["dtype"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    tensors = published_tensors(descriptor, backbone_dir)
    result = model.load_state_dict(tensors, strict=False, assign=True)
    if result.unexpected_keys:
        raise RuntimeError(f"published weights the model does not have: {result.unexpected_keys}")
    model.tie_weights()  # tied weights (lm_head = embedding) are published once
    device = next(iter(tensors.values())).device
    rebuild_buffers(model, device)
    still_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
                  if t.is_meta]
    if still_meta:
        raise RuntimeError(f"backbone tensors missing from the published weights: {still_meta}")
    model.eval()
    return model


def rebuild_buffers(model: PreTrainedModel, device: torch.device) -> None:
    """Recompute buffers left on `meta` (they are not weights, so they were not published)."""
    for name, module in list(model.named_modules()):
        if not any(buffer.is_meta for buffer in module.buffers(recurse=False)):
            continue
        # Modules holding computed buffers (rotary embeddings) are built from their config.
        with torch.device(device):
            rebuilt = type(module)(config=getattr(module, "config", model.config))
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attribute, rebuilt)
