"""Adapter zips are unpacked safely: path escapes, links and sizes are checked first."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from lorafaas.adapters.archive import adapter_prefix, check_members, extract_adapter, open_zip
from lorafaas.errors import AdapterRejected, PayloadTooLarge


def zip_of(files: dict[str, bytes]) -> zipfile.ZipFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return open_zip(buffer.getvalue())


def test_not_a_zip() -> None:
    with pytest.raises(AdapterRejected, match="not a zip"):
        open_zip(b"plain bytes")


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "C:/x"])
def test_escaping_paths(name: str) -> None:
    with pytest.raises(AdapterRejected, match="escapes"):
        check_members(zip_of({name: b"1"}), 1 << 20)


def test_symlink_entry() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
    with pytest.raises(AdapterRejected, match="symbolic link"):
        check_members(open_zip(buffer.getvalue()), 1 << 20)


def test_unpacked_size_limit() -> None:
    with pytest.raises(PayloadTooLarge):
        check_members(zip_of({"adapter_config.json": b"x" * 2048}), 1024)


def test_adapter_in_one_folder_is_found() -> None:
    assert adapter_prefix(zip_of({"pirate/adapter_config.json": b"{}"})) == "pirate/"
    with pytest.raises(AdapterRejected, match="adapter_config.json"):
        adapter_prefix(zip_of({"a/b/adapter_config.json": b"{}"}))


def test_pickle_only_is_refused_unread(tmp_path: Path) -> None:
    archive = zip_of({"adapter_config.json": b"{}", "adapter_model.bin": b"\x80\x04pickle"})
    with pytest.raises(AdapterRejected, match="pickle"):
        extract_adapter(archive, "", tmp_path / "out")
    assert not (tmp_path / "out" / "adapter_model.bin").exists()


def _stored_zip(files: dict[str, bytes]) -> bytearray:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return bytearray(buffer.getvalue())


def _set_central_field(data: bytearray, offset: int, value: int) -> zipfile.ZipFile:
    at = data.find(b"PK\x01\x02")
    data[at + offset:at + offset + 2] = value.to_bytes(2, "little")
    return open_zip(bytes(data))


def test_a_bad_crc_is_refused_naming_the_member(tmp_path: Path) -> None:
    data = _stored_zip({"adapter_model.safetensors": b"weights" * 1000})
    data[data.find(b"weights") + 10] ^= 0xFF
    with pytest.raises(AdapterRejected, match="'adapter_model.safetensors' cannot be read: Bad CRC"):
        extract_adapter(open_zip(bytes(data)), "", tmp_path / "out")


def test_encrypted_members_and_unknown_methods_are_refused() -> None:
    data = _stored_zip({"adapter_config.json": b"{}"})
    with pytest.raises(AdapterRejected, match="encrypted"):
        check_members(_set_central_field(bytearray(data), 8, 1), 1 << 20)
    with pytest.raises(AdapterRejected, match="compression method 99"):
        check_members(_set_central_field(bytearray(data), 10, 99), 1 << 20)


def test_a_truncated_member_is_refused(tmp_path: Path) -> None:
    data = _stored_zip({"adapter_model.safetensors": b"w" * 5000})
    start = data.find(b"w" * 5000)
    # The member's data cut short: the central directory still says 5000 bytes.
    cut = data[:start + 100] + data[start + 5000:]
    central = cut.find(b"PK\x01\x02")
    eocd = cut.find(b"PK\x05\x06")
    cut[eocd + 16:eocd + 20] = central.to_bytes(4, "little")
    with pytest.raises(AdapterRejected, match="cannot be read"):
        extract_adapter(open_zip(bytes(cut)), "", tmp_path / "out")
