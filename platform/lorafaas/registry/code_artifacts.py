"""Code actions' artifacts: their source or zip, staged and checked like an adapter's.

A code action's folder holds `__main__.py` (the source text, or the zip's files as they
were, under their own paths) and `exec.json` (`CodeExec`: the kind, the entry point, and
whether the code came as a zip), which the invoker reads to initialize its containers. The
digest covers the code and `exec.json`, so two actions of the same code with different
entry points never share a folder. The code as uploaded is kept where an adapter keeps its
zip (`ArtifactStore.zip_path`), for GET to return as it was sent.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from lorafaas.adapters.archive import HANDLER_NAME, check_members, copy_member, open_zip
from lorafaas.errors import AdapterRejected, PayloadTooLarge

EXEC_NAME = "exec.json"
CODE_FOLDER = "code"


@dataclass(frozen=True)
class CodeExec:
    """What a code action's containers need of its `exec`: kind, entry point, form."""

    kind: str
    main: str = "main"
    binary: bool = False

    def as_json(self) -> dict[str, Any]:
        """The `exec.json` form."""
        return {"kind": self.kind, "main": self.main, "binary": self.binary}


@dataclass(frozen=True)
class StoredCode:
    """A staged code artifact: its digest, folder and size (as `StoredAdapter` has)."""

    digest: str
    directory: Path
    size_bytes: int


def read_exec(folder: Path) -> CodeExec:
    """The `exec.json` of a stored code action."""
    data = json.loads((folder / EXEC_NAME).read_text())
    return CodeExec(str(data["kind"]), str(data.get("main") or "main"),
                    bool(data.get("binary")))


def stage_code(upload: Path, code_exec: CodeExec, max_bytes: int) -> StoredCode:
    """Unpack the code at `upload` (its source text, or its zip) beside it, in the staging
    folder; refuse a zip without `__main__.py` at its top, or past `max_bytes` unpacked."""
    target = upload.parent / CODE_FOLDER
    target.mkdir(mode=0o755)
    if code_exec.binary:
        _extract_zip(upload, target, max_bytes)
    else:
        _write_source(upload, target / HANDLER_NAME, max_bytes)
    (target / EXEC_NAME).write_text(json.dumps(code_exec.as_json()))
    os.chmod(target / EXEC_NAME, 0o644)
    digest = hashlib.sha256(upload.read_bytes())
    digest.update(b"\0" + json.dumps(code_exec.as_json(), sort_keys=True).encode())
    return StoredCode(digest.hexdigest(), target, upload.stat().st_size)


def _write_source(upload: Path, path: Path, max_bytes: int) -> None:
    if upload.stat().st_size > max_bytes:
        raise PayloadTooLarge(f"the code is over the limit of {max_bytes} bytes")
    try:
        upload.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise AdapterRejected("exec.code is not UTF-8 text; a zip needs exec.binary "
                              "true") from error
    path.write_bytes(upload.read_bytes())
    os.chmod(path, 0o644)


def _extract_zip(upload: Path, target: Path, max_bytes: int) -> None:
    with open_zip(upload) as archive:
        check_members(archive, max_bytes)
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        if HANDLER_NAME not in names:
            raise AdapterRejected(f"the zip has no {HANDLER_NAME} at its top level: "
                                  "OpenWhisk's Python actions start there")
        for name in names:
            path = target.joinpath(*PurePosixPath(name.replace("\\", "/")).parts)
            _make_folders(target, path.parent)
            copy_member(archive, name, path)
            # Containers run as nobody: what they read must be world-readable.
            os.chmod(path, 0o644)


def _make_folders(root: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    while folder != root:
        os.chmod(folder, 0o755)
        folder = folder.parent
