"""The backbone catalog: what the API lists of each backbone, and unknown names refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lorafaas.backbone_specs import BackboneSpec
from lorafaas.client.render import backbone_rows
from lorafaas.controller.backbones import Backbone, BackboneCatalog, Published, context_length
from lorafaas.errors import BadRequest


def checkpoint(folder: Path, config: dict[str, object]) -> Path:
    """A checkpoint folder: a config and one shard of two tensors (6 + 4 parameters)."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"model.layers.0.q_proj.weight": np.zeros((2, 3), np.float32),
               "model.norm.weight": np.zeros((4,), np.float32)}, str(folder / "model.safetensors"))
    return folder


def test_a_backbone_is_described_from_its_config_headers_and_publication(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "llama", {"model_type": "llama",
                                             "architectures": ["LlamaForCausalLM"],
                                             "max_position_embeddings": 512})
    backbone = Backbone.read(BackboneSpec("llama", folder, "bfloat16"),
                             Published("bfloat16", 20), default=True)
    assert backbone.linear_shapes == {"model.layers.0.q_proj": [2, 3]}
    assert backbone.describe() == {"name": "llama", "default": True, "modelType": "llama",
                                   "architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                                   "bytes": 20, "parameters": 10, "contextLength": 512}


def test_context_length_is_found_in_a_text_config_too() -> None:
    assert context_length({"n_positions": 1024}) == 1024
    assert context_length({"text_config": {"max_position_embeddings": 8192}}) == 8192
    assert context_length({}) is None


def test_unknown_names_are_refused_listing_the_served_ones(tmp_path: Path) -> None:
    listed = [Backbone.read(BackboneSpec(name, checkpoint(tmp_path / name, {})),
                            Published("float32", 40), default=i == 0)
              for i, name in enumerate(("zeta", "alpha"))]
    catalog = BackboneCatalog(listed)
    assert catalog.get(None).name == "zeta" and catalog.get("alpha").name == "alpha"
    assert catalog.names() == ["zeta", "alpha"]
    with pytest.raises(BadRequest, match="unknown backbone 'beta'; this deployment serves: "
                                         "zeta, alpha"):
        catalog.get("beta")
    with pytest.raises(BadRequest, match="unknown backbone 3"):
        catalog.get(3)  # type: ignore[arg-type]  # an annotation may hold any JSON


def test_the_cli_table_marks_the_default() -> None:
    text = backbone_rows([{"name": "demo", "default": True, "architecture": "LlamaForCausalLM",
                           "dtype": "float32", "bytes": 2**20, "parameters": 1234,
                           "contextLength": 512},
                          {"name": "tiny", "default": False, "modelType": "mistral",
                           "dtype": "bfloat16", "bytes": 0, "parameters": 0,
                           "contextLength": None}])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "architecture", "dtype", "published", "parameters",
                                "context"]
    assert lines[1].split() == ["demo", "*", "LlamaForCausalLM", "float32", "1.0", "MiB",
                                "1,234", "512"]
    assert lines[2].split() == ["tiny", "mistral", "bfloat16", "0.0", "MiB", "0", "?"]
