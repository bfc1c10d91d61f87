"""Bad adapters are refused at create with a 400 naming the problem, leaving nothing behind.

Every class of refusal goes through the API once: zips that fail only when read, configs
peft cannot build, rank mismatches, non-finite or overflowing values, tensors peft would
ignore, and a regular expression that would take Python's `re` minutes.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from lorafaas.controller.appkeys import sessions_key
from lorafaas.registry.models import Action, Artifact
from tests.adapter_cases import set_value, with_config, with_tensors, zip_files

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
    """Files in the artifact store, and any upload's staging folder left behind."""
    root = settings.artifacts_dir
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() or p.parent.name == ".staging"]


def _patched_entries(zip_bytes: bytes, field_offset: int, value: int,
                     local_offset: int | None = None) -> bytes:
    """The zip with a 2-byte field of every central directory entry (and, when given, of
    every local header) set to `value`."""
    data = bytearray(zip_bytes)
    for signature, offset in ((b"PK\x01\x02", field_offset), (b"PK\x03\x04", local_offset)):
        if offset is None:
            continue
        start = data.find(signature)
        while start != -1:
            struct.pack_into("<H", data, start + offset, value)
            start = data.find(signature, start + 4)
    return bytes(data)


def bad_zips(good: dict[str, bytes]) -> dict[str, tuple[bytes, str]]:
    """Zips that open but fail when a member is read, each with the phrase its error names."""
    stored = zip_files(good, zipfile.ZIP_STORED)
    weights = good["adapter_model.safetensors"]
    at = stored.find(weights[-4096:])
    corrupt = bytearray(stored)
    corrupt[at + 100] ^= 0xFF
    return {
        "bad-crc": (bytes(corrupt), "Bad CRC-32"),
        # General-purpose flag bit 0 (offset 8 in a central entry, 6 in a local header).
        "encrypted": (_patched_entries(stored, 8, 0x1, 6), "encrypted"),
        # Compression method (offset 10 in a central entry, 8 in a local header): 99 is AES.
        "unknown-method": (_patched_entries(stored, 10, 99, 8), "compression method 99"),
        "truncated": (stored[: len(stored) // 2], "not a zip archive"),
    }


def bad_contents(good: dict[str, bytes]) -> dict[str, tuple[dict[str, bytes], str]]:
    """One adapter of each class of bad config or tensors, made from a peft adapter."""
    return {
        "alpha-text": (with_config(good, lora_alpha="abc"), "lora_alpha"),
        "r-bool": (with_config(good, r=True), "r must be a positive integer"),
        "bad-regex": (with_config(good, target_modules="q_proj("), "regular expression"),
        "peft-type": (with_config(good, peft_type="lora"), "peft_type"),
        "task-type": (with_config(good, task_type="TEXT_GEN"), "task_type"),
        "modules-to-save": (with_config(good, modules_to_save=["lm_head"]), "modules_to_save"),
        "r-absurd": (with_config(good, r=1_000_000), "larger than the smallest dimension"),
        "rank-larger": (with_config(good, r=16), "but its tensors have rank 8"),
        "rank-smaller": (with_config(good, r=4), "but its tensors have rank 8"),
        "nan": (with_tensors(good, set_value("lora_A", float("nan"))), "NaN or infinite"),
        "overflow": (with_tensors(good, set_value("lora_B", 1e30)), "magnitude"),
        "untargeted": (with_config(good, target_modules=["q_proj"]), "does not target"),
        "unknown-tensor": (with_tensors(good, lambda t: {**t, "extra.weight": t[min(t)]}),
                           "never be loaded"),
    }


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


async def test_zips_failing_when_read_and_bad_contents_get_400s(platform, demo_models):  # type: ignore[no-untyped-def]
    good = adapter_files(demo_models.adapters["pirate"])
    cases = {name: zipped for name, zipped in bad_zips(good).items()}
    cases.update({name: (zip_files(files), phrase)
                  for name, (files, phrase) in bad_contents(good).items()})
    for case, (zip_bytes, phrase) in cases.items():
        response = await platform.request("PUT", f"/api/v1/namespaces/_/actions/{case}",
                                          json=body(zip_bytes))
        answer = await response.json()
        assert response.status == 400, (case, answer)
        assert phrase in answer["error"], (case, answer)
        assert await registry_counts(platform) == (0, 0), case
        assert stored_files(platform.settings) == [], case


async def test_a_regex_bomb_is_answered_without_stalling_the_api(platform, demo_models):  # type: ignore[no-untyped-def]
    # Python's re takes seconds on 14 characters of a module name, doubling with each more.
    good = adapter_files(demo_models.adapters["pirate"])
    bomb = zip_files(with_config(good, target_modules="(.*.*)*x_proj"))
    put = asyncio.ensure_future(platform.request(
        "PUT", "/api/v1/namespaces/_/actions/bomb", json=body(bomb)))
    answered_meanwhile = 0
    async with asyncio.timeout(120):  # generous: RE2 matches it in milliseconds
        while not put.done() or answered_meanwhile == 0:
            info = await platform.request("GET", "/api/v1")
            assert info.status == 200
            answered_meanwhile += 1
        response = await put
    answer = await response.json()
    assert response.status == 400 and "selects no module" in answer["error"], answer
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []


async def test_a_zip_body_is_accepted_as_the_adapter_itself(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/raw", data=io.BytesIO(zip_bytes),
                                      headers={"Content-Type": "application/zip"})
    answer = await response.json()
    assert response.status == 200, answer
    got = await platform.request("GET", "/api/v1/namespaces/_/actions/raw")
    assert base64.b64decode((await got.json())["exec"]["code"]) == zip_bytes
    spoilt = zip_files(with_config(adapter_files(demo_models.adapters["pirate"]), r=4))
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/raw2", data=io.BytesIO(spoilt),
                                      headers={"Content-Type": "application/zip"})
    assert response.status == 400 and "rank" in (await response.json())["error"]
    assert await registry_counts(platform) == (1, 1)


async def test_zip_with_escaping_path_is_refused(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    files = adapter_files(demo_models.adapters["pirate"])
    zip_bytes = make_zip({**files, "../../escape.txt": b"outside"})
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/escape",
                                      json=body(zip_bytes))
    answer = await response.json()
    assert response.status == 400 and "escapes" in answer["error"], answer
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []
