"""The backbones this deployment serves: their names, folders and linear-layer shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorafaas.adapters.validation import backbone_linear_shapes
from lorafaas.errors import BadRequest


@dataclass(frozen=True)
class Backbone:
    """One backbone: where its checkpoint is and the shapes adapters must fit."""

    name: str
    model_dir: Path
    linear_shapes: dict[str, list[int]]


class BackboneCatalog:
    """Backbones by name; the first is the default."""

    def __init__(self, model_dirs: list[Path]) -> None:
        self._backbones = {d.name: Backbone(d.name, d, backbone_linear_shapes(d))
                           for d in model_dirs}
        self.default = model_dirs[0].name

    def get(self, name: str | None) -> Backbone:
        """The backbone called `name` (the default when None), or a 400 naming the choices."""
        key = name or self.default
        if key not in self._backbones:
            raise BadRequest(f"unknown backbone {key!r}; this deployment serves: "
                             f"{', '.join(sorted(self._backbones))}")
        return self._backbones[key]
