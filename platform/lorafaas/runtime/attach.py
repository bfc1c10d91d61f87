"""Attach to the backbone server and build the backbone model on its published weights.

The model is built on the `meta` device (no memory), the published tensors are assigned
in place (no copy: the weights stay pages of the shared file or CUDA IPC memory), and the
buffers that are not weights (rotary `inv_freq`) are computed as transformers computes them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open

from lorafaas.wire.attach import MAX_LINE, decode, encode

if TYPE_CHECKING:  # the model is built for the general path only, which imports them then
    from transformers import PretrainedConfig, PreTrainedModel

GENERATION_CONFIG = "generation_config.json"
ATTACH_TIMEOUT_S = 120.0  # a server that accepts and never answers must not hang /init
EPOCH_TIMEOUT_S = 5.0
CUDA_DEVICE_ENV = "LORAFAAS_CUDA_DEVICE"  # this container's index of the server's GPU


class BackboneAttachment:
    """An attachment to the backbone server, made on this container's own channel.

    The server knows the container from the channel's socket; the attachment lasts until
    the container detaches or its channel is closed, so the connection is not kept."""

    def __init__(self, socket_path: Path, client: str) -> None:
        answer = _ask(socket_path, {"op": "attach"}, ATTACH_TIMEOUT_S)
        if not answer.get("ok"):
            raise RuntimeError(f"backbone server refused the attach of {client}: "
                               f"{answer.get('error')}")
        self.socket_path = socket_path
        self.descriptor: dict[str, Any] = answer["backbone"]
        self.epoch = str(answer.get("epoch") or self.descriptor.get("epoch") or "")

    def is_current(self) -> bool:
        """Whether what was mapped is still there: always on tmpfs (the pages outlive the
        server); on CUDA only while the server that exported the memory runs, that is
        while the channel answers with the epoch of the attach."""
        if self.descriptor.get("transport") != "cuda-ipc":
            return True
        try:
            answer = _ask(self.socket_path, {"op": "epoch"}, EPOCH_TIMEOUT_S)
        except (OSError, ValueError):
            return False
        return bool(answer.get("ok")) and answer.get("epoch") == self.epoch


def _ask(socket_path: Path, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout_s)
        connection.connect(str(socket_path))
        with connection.makefile("rwb") as stream:
            stream.write(encode(request))
            stream.flush()
            return decode(stream.readline(MAX_LINE))


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
        from lorafaas.wire.cuda_ipc import import_tensors

        return import_tensors(descriptor, local_cuda_device())
    raise ValueError(f"unknown backbone transport {descriptor['transport']!r}")


def local_cuda_device() -> int | None:
    """This process's index of the GPU the server exported from: the invoker sets it in a
    container given that one GPU (device 0 there); None: the server's own numbering."""
    value = os.environ.get(CUDA_DEVICE_ENV, "")
    return int(value) if value.isdigit() else None


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
