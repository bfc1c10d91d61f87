"""The console writes an uploaded folder or zip to the staging file in chunks, as it came."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from lorafaas.console.upload import FieldError, write_adapter_zip


def field(filename: str, data: bytes) -> web.FileField:
    """A file field as aiohttp's multipart reader gives it."""
    return web.FileField("adapter", filename, io.BytesIO(data), "application/octet-stream",
                         CIMultiDictProxy(CIMultiDict()))


def test_a_folders_files_are_zipped_at_the_top_level(tmp_path: Path) -> None:
    big = bytes(range(256)) * 10000  # several copy chunks
    write_adapter_zip([field("pirate/adapter_config.json", b"{}"),
                       field("pirate/adapter_model.safetensors", big)], tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.namelist() == ["adapter_config.json", "adapter_model.safetensors"]
        assert archive.read("adapter_model.safetensors") == big


def test_one_zip_is_copied_as_it_is(tmp_path: Path) -> None:
    data = b"PK\x05\x06" + bytes(18) + b"x" * 3_000_000
    write_adapter_zip([field("Adapter.ZIP", data)], tmp_path / "a.zip")
    assert (tmp_path / "a.zip").read_bytes() == data


def test_no_file_is_a_field_error(tmp_path: Path) -> None:
    with pytest.raises(FieldError, match="Choose an adapter"):
        write_adapter_zip([], tmp_path / "a.zip")
