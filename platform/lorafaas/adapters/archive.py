"""Unpack an uploaded adapter zip safely: no path escapes, no links, bounded size.

A zip can look whole and still fail when a member is read (a bad CRC, a truncated member,
an encrypted one, a compression method Python lacks): each is refused with a 400 naming the
member, never a 500.
"""

from __future__ import annotations

import io
import lzma
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO

from lorafaas.errors import AdapterRejected, PayloadTooLarge

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAME = "adapter_model.bin"
HANDLER_NAME = "__main__.py"
# Files of an adapter folder that are kept; anything else in the zip is ignored.
KEPT_NAMES = (CONFIG_NAME, WEIGHTS_NAME, HANDLER_NAME, "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "README.md")


# What Python's zipfile can decompress; other methods fail only when the member is read.
SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                     zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
# Errors zipfile and its decompressors raise for a member whose data is damaged.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
                NotImplementedError, RuntimeError, ValueError)


def open_zip(source: Path | bytes) -> zipfile.ZipFile:
    """Open the uploaded zip (a file, or bytes in tests), or refuse it."""
    try:
        return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise AdapterRejected("exec.code is not a zip archive (base64 of a zip is expected): "
                              f"{error}") from error


def check_members(archive: zipfile.ZipFile, max_bytes: int) -> None:
    """Refuse paths that escape the folder, links, and more unpacked bytes than allowed."""
    total = 0
    for info in archive.infolist():
        _check_member_path(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise AdapterRejected(f"zip entry {info.filename!r} is a symbolic link; "
                                  "links are not accepted")
        if info.flag_bits & 0x1:
            raise AdapterRejected(f"zip entry {info.filename!r} is encrypted; encrypted zips "
                                  "are not accepted")
        if info.compress_type not in SUPPORTED_METHODS:
            raise AdapterRejected(
                f"zip entry {info.filename!r} uses compression method {info.compress_type}, "
                f"which cannot be read; use one of: {', '.join(SUPPORTED_METHODS.values())}")
        total += info.file_size
    if total > max_bytes:
        raise PayloadTooLarge(f"the adapter unpacks to {total} bytes, over the limit of "
                              f"{max_bytes} bytes")


def _check_member_path(name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise AdapterRejected(f"zip entry {name!r} has a path that escapes the adapter folder")


def adapter_prefix(archive: zipfile.ZipFile) -> str:
    """The folder inside the zip that holds `adapter_config.json`: the root or one folder."""
    names = {info.filename for info in archive.infolist() if not info.is_dir()}
    if CONFIG_NAME in names:
        return ""
    nested = sorted(n for n in names if PurePosixPath(n).name == CONFIG_NAME
                    and len(PurePosixPath(n).parts) == 2)
    if len(nested) == 1:
        return str(PurePosixPath(nested[0]).parent) + "/"
    raise AdapterRejected(f"the zip has no {CONFIG_NAME} at its top level: a PEFT adapter "
                          "folder (as saved by save_pretrained) is expected")


def extract_adapter(archive: zipfile.ZipFile, prefix: str, target: Path) -> list[str]:
    """Write the adapter's kept files from the zip into `target`; return their names."""
    target.mkdir(parents=True, exist_ok=False)
    written = []
    for name in KEPT_NAMES:
        member = prefix + name
        if member not in archive.namelist():
            continue
        _copy_member(archive, member, target / name)
        written.append(name)
    if WEIGHTS_NAME not in written and (prefix + PICKLE_NAME) in archive.namelist():
        raise AdapterRejected(f"{PICKLE_NAME} is a pickle and is never loaded: ship "
                              f"{WEIGHTS_NAME} (peft's save_pretrained writes it by default)")
    if WEIGHTS_NAME not in written:
        raise AdapterRejected(f"the zip has no {WEIGHTS_NAME} beside {CONFIG_NAME}")
    return written


def copy_member(archive: zipfile.ZipFile, member: str, path: Path) -> None:
    """Write one member to `path`; a member that cannot be read is refused (400)."""
    _copy_member(archive, member, path)


def _copy_member(archive: zipfile.ZipFile, member: str, path: Path) -> None:
    # zipfile checks the CRC and the declared size as the last chunk is read.
    with open(path, "wb") as sink:
        try:
            source = archive.open(member)
        except _READ_ERRORS as error:
            raise AdapterRejected(f"zip entry {member!r} cannot be read: {error}") from error
        with source:
            while chunk := _read_chunk(source, member):
                sink.write(chunk)  # a full disk stays a server error, not the client's


def _read_chunk(source: IO[bytes], member: str) -> bytes:
    try:
        return source.read(1 << 20)
    except _READ_ERRORS as error:
        raise AdapterRejected(f"zip entry {member!r} cannot be read: {error}") from error
