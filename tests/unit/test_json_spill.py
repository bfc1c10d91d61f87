"""A PUT body is parsed with its exec.code left on disk and decoded in chunks, exactly as
json.loads and base64 would read it, whatever the chunk boundaries."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from lorafaas.controller import json_spill
from lorafaas.controller.uploads import decode_action_body
from lorafaas.errors import BadRequest, PayloadTooLarge

ZIP = os.urandom(5000) + b"end"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and the spill size small, so that boundaries fall everywhere."""
    monkeypatch.setattr(json_spill, "_CHUNK", 7)
    monkeypatch.setattr(json_spill, "SPILL_AT", 100)


def decode(tmp_path: Path, text: str | bytes) -> tuple[dict, bytes | None]:  # type: ignore[type-arg]
    """The fields of a body, and the zip written when there is one."""
    body = tmp_path / "body.json"
    body.write_bytes(text.encode() if isinstance(text, str) else text)
    fields = decode_action_body(body, tmp_path / "upload.zip", 1 << 20)
    zipped = tmp_path / "upload.zip"
    return fields, zipped.read_bytes() if zipped.exists() else None


def body_text(code: str, **extra: object) -> str:
    """A PUT body with `code` as exec.code."""
    return json.dumps({"exec": {"kind": "lora", "binary": True, "code": code}, **extra})


def test_code_is_decoded_and_other_fields_read_as_json(tmp_path: Path) -> None:
    extra = {"annotations": [{"key": "q\"uote\\", "value": "é \u2603"}], "limits": {"a": 1.5}}
    fields, zipped = decode(tmp_path, body_text(base64.b64encode(ZIP).decode(), **extra))
    assert zipped == ZIP
    assert fields["annotations"] == extra["annotations"] and fields["limits"] == {"a": 1.5}
    assert fields["exec"]["code"] == tmp_path / "upload.zip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["body.json", "upload.zip"]


def test_code_that_is_not_base64_is_left_as_text(tmp_path: Path) -> None:
    # OpenWhisk's reading: only base64 code is binary; the kind's parser says what it takes.
    for code in ("", "   ", "def main(args): return {}"):
        fields, zipped = decode(tmp_path, body_text(code))
        assert fields["exec"]["code"] == code and zipped is None


@pytest.mark.parametrize("size", [1, 2, 3, 74, 75, 76, 77, 5003])
def test_every_padding_and_boundary_decodes(tmp_path: Path, size: int) -> None:
    data = ZIP[:size]
    _, zipped = decode(tmp_path, body_text(base64.b64encode(data).decode()))
    assert zipped == data


def test_escaped_slashes_are_read_as_json_reads_them(tmp_path: Path) -> None:
    encoded = base64.b64encode(bytes(range(256)) * 20).decode()
    assert "/" in encoded
    text = body_text(encoded).replace("/", "\\/")
    _, zipped = decode(tmp_path, text)
    assert zipped == bytes(range(256)) * 20


@pytest.mark.parametrize("code", ["A" * 200 + "=" + "A" * 203, "A" * 201 + "!" * 3, "é" * 300])
def test_bad_base64_is_a_400(tmp_path: Path, code: str) -> None:
    with pytest.raises(BadRequest, match="base64"):
        decode(tmp_path, body_text(code))


@pytest.mark.parametrize("text", [b'{"exec": ', b"[1, 2]", b'{"a": "\xff\xfe"}', b"[" * 100000])
def test_malformed_bodies_are_400s(tmp_path: Path, text: bytes) -> None:
    with pytest.raises(BadRequest):
        decode(tmp_path, text)


def test_a_large_string_elsewhere_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PayloadTooLarge, match="only exec.code"):
        decode(tmp_path, body_text("QUJD", annotations=[{"key": "k", "value": "x" * 500}]))


def test_an_empty_body_has_no_fields(tmp_path: Path) -> None:
    assert decode(tmp_path, b"") == ({}, None)
