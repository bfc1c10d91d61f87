"""The backbones this deployment serves: names, folders, what adapters must fit, and what
the API lists of each (model type, dtype, published size, parameters, context length)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.adapters.validation import backbone_linear_shapes, read_tensor_shapes
from lorafaas.backbone.supervisor import BackboneEndpoint
from lorafaas.backbone_specs import BackboneSpec
from lorafaas.errors import BadRequest

# Where configs keep the context length, by family (the first present is taken).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


@dataclass(frozen=True)
class Published:
    """What a backbone server published: the serving dtype and the weights' bytes."""

    dtype: str
    bytes: int
    transport: str = "tmpfs"
    device: int | None = None  # the CUDA device of a cuda-ipc transport
    device_free_bytes: int | None = None  # that device's free memory once published

    @classmethod
    def from_descriptor(cls, descriptor: Mapping[str, Any]) -> Published:
        """From the attach protocol's descriptor (lorafaas.wire.attach)."""
        device = descriptor.get("device")
        free = (descriptor.get("deviceMemory") or {}).get("free")
        return cls(str(descriptor.get("dtype", "")), int(descriptor.get("bytes", 0)),
                   str(descriptor.get("transport", "tmpfs")),
                   int(device) if isinstance(device, int) else None,
                   int(free) if isinstance(free, int) else None)


@dataclass(frozen=True)
class ServedBackbone:
    """A running backbone server: the backbone, where to reach it, what it published."""

    spec: BackboneSpec
    endpoint: BackboneEndpoint
    published: Published
    pid: int | None


@dataclass(frozen=True)
class Backbone:
    """One backbone: its checkpoint, the shapes adapters must fit, and how it is served."""

    name: str
    model_dir: Path
    linear_shapes: dict[str, list[int]]
    config: dict[str, Any]
    parameters: int
    published: Published
    default: bool = False

    @classmethod
    def read(cls, spec: BackboneSpec, published: Published, default: bool) -> Backbone:
        """Read the checkpoint's config and tensor headers (no weights are loaded)."""
        config = json.loads((spec.folder / "config.json").read_text())
        return cls(spec.name, spec.folder, backbone_linear_shapes(spec.folder), config,
                   _parameter_count(spec.folder), published, default)

    def describe(self) -> dict[str, Any]:
        """The backbone as `GET /api/v1/backbones` lists it."""
        architectures = self.config.get("architectures") or [None]
        return {"name": self.name, "default": self.default,
                "modelType": self.config.get("model_type"), "architecture": architectures[0],
                "dtype": self.published.dtype, "bytes": self.published.bytes,
                "parameters": self.parameters, "contextLength": context_length(self.config)}


def context_length(config: Mapping[str, Any]) -> int | None:
    """The longest sequence the config allows (a multimodal config's text part's)."""
    for source in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            if isinstance(source.get(key), int):
                return int(source[key])
    return None


def _parameter_count(folder: Path) -> int:
    total = 0
    for shard in sorted(folder.glob("*.safetensors")):
        for _, shape in read_tensor_shapes(shard).values():
            count = 1
            for size in shape:
                count *= size
            total += count
    return total


class BackboneCatalog:
    """Backbones by name; the first is the default."""

    def __init__(self, backbones: Iterable[Backbone]) -> None:
        listed = list(backbones)
        if not listed:
            raise ValueError("a deployment serves at least one backbone")
        self._backbones = {b.name: b for b in listed}
        self.default = listed[0].name

    def names(self) -> list[str]:
        """Every backbone's name, the default first."""
        return list(self._backbones)

    def all(self) -> list[Backbone]:
        """Every backbone, the default first."""
        return list(self._backbones.values())

    def get(self, name: str | None) -> Backbone:
        """The backbone called `name` (the default when None), or a 400 naming the choices."""
        key = name or self.default
        if not isinstance(key, str) or key not in self._backbones:
            raise BadRequest(f"unknown backbone {key!r}; this deployment serves: "
                             f"{', '.join(self._backbones)}")
        return self._backbones[key]
