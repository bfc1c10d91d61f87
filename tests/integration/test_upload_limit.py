"""Uploads: over the size limit a 413 leaving nothing behind, memory bounded while one is
received, and beyond the concurrency cap a 429 with Retry-After."""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import zipfile
from pathlib import Path

import pytest

from lorafaas.controller.appkeys import actions_key
from lorafaas.demo.adapters import LORA_TARGET_MODULES
from lorafaas.settings import replace
from tests.adapter_cases import files_of, make_peft_adapter, zip_files
from tests.integration.test_adapter_refusals import body, registry_counts, stored_files

pytestmark = pytest.mark.docker
LIMIT = 256 * 1024


@pytest.fixture
def settings(settings, request):  # type: ignore[no-untyped-def]
    """A platform whose upload limit is below the demo adapter's size (for the tests whose
    name says so), and which takes two uploads at once."""
    limit = LIMIT if "over_the_limit" in request.node.name else settings.max_adapter_bytes
    return replace(settings, max_adapter_bytes=limit, max_concurrent_uploads=2)


async def test_upload_over_the_limit_gets_413(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    assert len(zip_bytes) > LIMIT
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/big",
                                      json=body(zip_bytes))
    answer = await response.json()
    assert response.status == 413, answer
    assert "error" in answer and "code" in answer
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/big", data=io.BytesIO(zip_bytes),
                                      headers={"Content-Type": "application/zip"})
    assert response.status == 413, await response.json()
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []


def _rss_reset() -> int:
    """Reset this process's peak resident size (Linux clear_refs 5); its size now, bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _peak_rss() -> int:
    """This process's peak resident size since the last reset, in bytes."""
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(f"{field}:"))
    return int(line.split()[1])


@pytest.fixture(scope="module")
def large_adapter(demo_models, tmp_path_factory) -> bytes:  # type: ignore[no-untyped-def]
    """A 40 MB adapter made with peft: rank 128 on every linear layer of the demo backbone."""
    folder = make_peft_adapter(demo_models.backbone_dir, tmp_path_factory.mktemp("large") / "a",
                               r=128, target_modules=list(LORA_TARGET_MODULES))
    return zip_files(files_of(folder), zipfile.ZIP_STORED)


def _json_body_file(zip_bytes: bytes, path: Path) -> Path:
    # The client streams the body from a file, so the process's growth is the server's.
    with open(path, "wb") as sink:
        sink.write(b'{"exec": {"kind": "lora", "binary": true, "code": "')
        sink.writelines(base64.b64encode(zip_bytes[start:start + (3 << 20)])
                        for start in range(0, len(zip_bytes), 3 << 20))
        sink.write(b'"}}')
    return path


async def test_uploads_are_received_with_bounded_memory(platform, large_adapter, tmp_path):  # type: ignore[no-untyped-def]
    size = len(large_adapter)
    zip_path = tmp_path / "large.zip"
    zip_path.write_bytes(large_adapter)
    body_path = _json_body_file(large_adapter, tmp_path / "body.json")
    del large_adapter
    gc.collect()
    growth: dict[str, int] = {}
    for name, path, content_type in (("zip", zip_path, "application/zip"),
                                     ("json", body_path, "application/json")):
        before = _rss_reset()
        with await asyncio.to_thread(path.open, "rb") as source:
            response = await platform.request(
                "PUT", f"/api/v1/namespaces/_/actions/large-{name}", data=source,
                headers={"Content-Type": content_type})
        assert response.status == 200, await response.json()
        growth[name] = _peak_rss() - before
    print(f"adapter {size / 1e6:.1f} MB; peak RSS growth: zip body "
          f"{growth['zip'] / 1e6:.1f} MB, JSON body {growth['json'] / 1e6:.1f} MB")
    # Both bodies are streamed to disk and the base64 decoded from there in chunks: the
    # growth does not depend on the adapter's size (before, about 4 times the zip).
    assert growth["zip"] < size / 2, growth
    assert growth["json"] < size / 2, growth


async def test_uploads_beyond_the_cap_get_429_with_retry_after(platform, demo_models,  # type: ignore[no-untyped-def]
                                                               make_zip):
    service = platform.app[actions_key]
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    with service.uploads.slot(), service.uploads.slot():  # the cap of 2, taken
        response = await platform.request("PUT", "/api/v1/namespaces/_/actions/capped",
                                          json=body(zip_bytes))
        answer = await response.json()
        assert response.status == 429, answer
        assert int(response.headers["Retry-After"]) > 0
        assert "uploads" in answer["error"] and "code" in answer
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/capped",
                                      json=body(zip_bytes))
    assert response.status == 200, await response.json()
