"""Attach to the backbone server and build the backbone model on its published weights.

The model is built on the `meta` device (no memory), the published tensors are assigned
in place (no copy: the weights stay pages of the shared file or CUDA IPC memory), and the
buffers that are not weights (rotary `inv_freq`) are computed as transformers computes them.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open

from lorafaas.wire.attach import MAX_LINE, decode, encode

if TYPE_CHECKING:  # the model is built for the general path only, which imports them then
    from transformers import PretrainedConfig, PreTrainedModel

GENERATION_CONFIG = "generation_config.json"


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
    from transformers import AutoConfig

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


def build_backbone(descriptor: dict[str, Any], backbone_dir: Path,
                   tensors: dict[str, torch.Tensor] | None = None) -> PreTrainedModel:
    """The backbone model whose weights are the published tensors, ready for inference.

    `tensors` defaults to the published ones, mapped; a private copy passes its own."""
    from transformers import AutoModelForCausalLM

    config = backbone_config(descriptor)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, descriptor["dtype"]))
    if tensors is None:
        tensors = published_tensors(descriptor, backbone_dir)
    result = model.load_state_dict(tensors, strict=False, assign=True)
    if result.unexpected_keys:
        raise RuntimeError(f"published weights the model does not have: {result.unexpected_keys}")
    # Tied weights (lm_head = embedding) are published once, under one of their names: the
    # other is tied to it here, after assignment (before it, the tie would point at meta).
    model.tie_weights(missing_keys=set(result.missing_keys), recompute_mapping=False)
    rebuild_buffers(model, next(iter(tensors.values())).device)
    still_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
                  if t.is_meta]
    if still_meta:
        raise RuntimeError(f"backbone tensors missing from the published weights: {still_meta}")
    _load_generation_config(model, backbone_dir)
    model.eval()
    return model


def rebuild_buffers(model: PreTrainedModel, device: torch.device) -> None:
    """Compute the non-persistent buffers (rotary `inv_freq`, Gemma's `embed_scale`): they
    are not weights, so they were not published.

    As transformers does after loading on `meta`: the buffers get storage, then the model's
    own `_init_weights` fills them; every loaded tensor is marked initialised first, so
    that the init functions (which honour the mark) never write the mapped weights.
    """
    from transformers import initialization as init

    buffers = [(name, buffer) for name, buffer in model.named_non_persistent_buffers()
               if buffer.is_meta]
    if not buffers:
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        if not tensor.is_meta:
            tensor._is_hf_initialized = True  # type: ignore[attr-defined]
    owners: dict[str, torch.nn.Module] = {}
    for name, buffer in buffers:
        owner_name, _, attribute = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        owner.register_buffer(attribute, torch.empty_like(buffer, device=device),
                              persistent=False)
        owners[owner_name] = owner
    with torch.no_grad(), init.guard_torch_init_functions():
        for owner in owners.values():
            model._init_weights(owner)


def _load_generation_config(model: PreTrainedModel, backbone_dir: Path) -> None:
    # Built from a config, the model has a generation config derived from it; the
    # checkpoint's own (its EOS ids above all) was published beside the weights.
    if (backbone_dir / GENERATION_CONFIG).exists():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(backbone_dir),
                                                                   local_files_only=True)
