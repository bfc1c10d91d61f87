"""Bad adapters are refused at create with a 400 naming the problem, leaving nothing behind."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from lorafaas.controller.appkeys import sessions_key
from lorafaas.registry.models import Action, Artifact

pytestmark = pytest.mark.docker


def body(zip_bytes: bytes) -> dict[str, Any]:
    """A PUT body of an action of kind lora."""
    return {"exec": {"kind": "lora", "binary": True,
                     "code": base64.b64encode(zip_bytes).decode()}}


def adapter_files(adapter_dir: Path) -> dict[str, bytes]:
    """The files of a good demo adapter, to be spoilt by each case."""
    return {p.name: p.read_bytes() for p in adapter_dir.iterdir() if p.is_file()}


class PickleBomb:
    """Unpickling this writes a marker file: proof that a pickle was executed."""

    marker: Path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.write_text, (self.marker, "unpickled"))


def spoilt_adapters(good: dict[str, bytes], marker: Path) -> dict[str, tuple[dict[str, bytes],
                                                                           str]]:
    """Each bad case: its files and a phrase the error must contain."""
    config = json.loads(good["adapter_config.json"])
    wrong_target = json.dumps({**config, "target_modules": ["attention_projection"]}).encode()
    bomb = PickleBomb()
    bomb.marker = marker
    return {
        "shapes": ({**good, "adapter_model.safetensors": _wrong_shapes(good)}, "do not fit"),
        "target": ({**good, "adapter_config.json": wrong_target}, "attention_projection"),
        "no-config": ({"adapter_model.safetensors": good["adapter_model.safetensors"]},
                      "adapter_config.json"),
        "pickle-only": ({"adapter_config.json": good["adapter_config.json"],
                         "adapter_model.bin": pickle.dumps(bomb)}, "pickle"),
        "corrupt": ({**good, "adapter_model.safetensors":
                     good["adapter_model.safetensors"][:1000]}, "not a valid safetensors"),
    }


def _wrong_shapes(good: dict[str, bytes]) -> bytes:
    from safetensors.numpy import load, save

    tensors = load(good["adapter_model.safetensors"])
    name = min(n for n in tensors if "lora_A" in n)
    tensors[name] = tensors[name][:, :100].copy()  # in_features no longer the backbone's
    return save(tensors)


async def registry_counts(platform) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Rows of actions and artifacts."""
    async with platform.app[sessions_key]() as session:
        actions = await session.scalar(select(func.count()).select_from(Action))
        artifacts = await session.scalar(select(func.count()).select_from(Artifact))
    return int(actions or 0), int(artifacts or 0)


def stored_files(settings) -> list[Path]:  # type: ignore[no-untyped-def]
    """Files in the artifact store."""
    root = settings.artifacts_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_bad_adapters_are_refused_and_leave_nothing(platform, demo_models, make_zip,  # type: ignore[no-untyped-def]
                                                          tmp_path):
    marker = tmp_path / "unpickled"
    cases = spoilt_adapters(adapter_files(demo_models.adapters["pirate"]), marker)
    for case, (files, phrase) in cases.items():
        response = await platform.request("PUT", f"/api/v1/namespaces/_/actions/{case}",
                                          json=body(make_zip(files)))
        answer = await response.json()
        assert response.status == 400, (case, answer)
        assert phrase in answer["error"], (case, answer)
        assert await registry_counts(platform) == (0, 0), case
        assert stored_files(platform.settings) == [], case
    assert not marker.exists(), "a pickle was unpickled"


async def test_zip_with_escaping_path_is_refused(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    files = adapter_files(demo_models.adapters["pirate"])
    zip_bytes = make_zip({**files, "../../escape.txt": b"outside"})
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/escape",
                                      json=body(zip_bytes))
    answer = await response.json()
    assert response.status == 400 and "escapes" in answer["error"], answer
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []
