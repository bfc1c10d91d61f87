"""An action's `exec` as `wsk action create|update` builds it: an adapter, code, or a sequence.

The kind follows wsk: given by `--kind`, else inferred from the file (`.py` is
`python:default`, which the server stores as `python:3`); a zip needs `--kind` unless it
is an adapter (it holds `adapter_config.json`: kind lora), and so does any other file. A
folder is zipped, an adapter's by default. `binary` is never sent: the server infers it
from the code, as OpenWhisk does (base64 is a zip).
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path
from typing import Any

from lorafaas.client.output import CommandError
from lorafaas.client.payload import encode_code, zip_folder

LORA_KIND = "lora"
SEQUENCE_KIND = "sequence"
PYTHON_DEFAULT = "python:default"  # wsk's kind for a .py file
ADAPTER_CONFIG = "adapter_config.json"


def exec_field(args: argparse.Namespace, namespace: str) -> dict[str, Any] | None:
    """The body's `exec`: a sequence's components, the given artifact's code, or None
    (an update without either keeps the action's, as OpenWhisk merges)."""
    kind, main = getattr(args, "kind", None), getattr(args, "main", None)
    if getattr(args, "sequence", None):
        if args.artifact is not None:
            raise CommandError("A sequence takes no adapter: give --sequence or ADAPTER.")
        if kind is not None or main is not None:
            raise CommandError("A kind or --main may not be specified for a sequence.")
        return {"kind": SEQUENCE_KIND,
                "components": sequence_components(args.sequence, namespace)}
    if args.artifact is None:
        if kind is not None or main is not None:
            raise CommandError("A kind or --main can only be specified when you provide a "
                               "code artifact.")
        return None
    return artifact_exec(Path(args.artifact), kind, main)


def artifact_exec(path: Path, kind: str | None, main: str | None) -> dict[str, Any]:
    """`exec` of a file or folder: `{kind, code[, main]}`, the code base64 when it is a zip."""
    if path.is_dir():
        code, is_zip = zip_folder(path), True
    elif path.is_file():
        is_zip = zipfile.is_zipfile(path)
        code = path.read_bytes()
    else:
        raise CommandError(f"File '{path}' is not a valid file or it does not exist.")
    kind = kind or _inferred_kind(path, code, is_zip)
    field: dict[str, Any] = {"kind": kind, "code": encode_code(code) if is_zip
                             else _source_text(path, code)}
    if main is not None:
        field["main"] = main
    return field


def _inferred_kind(path: Path, code: bytes, is_zip: bool) -> str:
    if path.is_dir() or (is_zip and _holds_adapter(code)):
        return LORA_KIND
    if path.suffix == ".py" and not is_zip:
        return PYTHON_DEFAULT
    if is_zip:
        raise CommandError("creating an action from a .zip artifact requires specifying the "
                           "action kind explicitly (--kind python:3, or lora for an adapter)")
    raise CommandError(f"'{path.suffix or path.name}' is not a supported action runtime "
                       "(a .py file, an adapter folder or zip, or --kind)")


def _holds_adapter(code: bytes) -> bool:
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        return any(Path(name).name == ADAPTER_CONFIG for name in archive.namelist())


def _source_text(path: Path, code: bytes) -> str:
    try:
        return code.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CommandError(f"'{path}' is neither UTF-8 source text nor a zip") from error


def sequence_components(names: str, namespace: str) -> list[str]:
    """`a,pkg/b,/ns/c` as fully qualified names, as wsk resolves them (`/NAMESPACE/a`,
    `/NAMESPACE/pkg/b`)."""
    components = [name.strip() for name in names.split(",") if name.strip()]
    if not components:
        raise CommandError("--sequence needs at least one action name.")
    return [name if name.startswith("/") else f"/{namespace}/{name}" for name in components]
