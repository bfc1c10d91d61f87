"""What the client sends: adapter zips and wsk-style `KEY VALUE` parameters."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from lorafaas.client.output import CommandError


def parse_value(text: str) -> Any:
    """A `--param` value: JSON when it parses (`8`, `true`, `{"a": 1}`), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def key_values(pairs: list[list[str]] | None, file: Path | None, what: str) -> dict[str, Any]:
    """`--param-file` (a JSON object) overlaid with each `--param KEY VALUE`."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(_json_object_file(file, what))
    for key, value in pairs or []:
        values[key] = parse_value(value)
    return values


def _json_object_file(file: Path, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(file.read_text())
    except OSError as error:
        raise CommandError(f"File '{file}' is not a valid file or it does not exist: "
                           f"{error.strerror}") from error
    except ValueError as error:
        raise CommandError(f"Invalid {what} file '{file}': {error}") from error
    if not isinstance(loaded, dict):
        raise CommandError(f"Invalid {what} file '{file}': a JSON object is expected")
    return loaded


def key_value_list(values: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenWhisk's `[{"key", "value"}]` form of a mapping."""
    return [{"key": key, "value": value} for key, value in values.items()]


def adapter_zip(path: Path) -> bytes:
    """The zip to upload: a folder zipped in memory, a zip file as it is."""
    if path.is_dir():
        return zip_folder(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return path.read_bytes()
    if path.is_file():
        raise CommandError(f"'{path}' is neither a .zip file nor an adapter folder")
    raise CommandError(f"File '{path}' is not a valid file or it does not exist.")


def zip_folder(folder: Path) -> bytes:
    """Every file under `folder`, stored under its path relative to it (no folder entries)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(folder).as_posix())
    return buffer.getvalue()


def encode_code(zip_bytes: bytes) -> str:
    """`exec.code`: the zip as base64."""
    return base64.b64encode(zip_bytes).decode()
