"""The backbones a deployment serves, as the settings name them: name, folder, serving dtype.

`LORAFAAS_BACKBONES` lists them, the first being the default:

- inline, comma-separated `name=folder` entries, each with an optional `:dtype` suffix:
  `demo=~/.lorafaas/models/demo-backbone,llama=/models/llama-1b:bfloat16`;
- or the path of a TOML file (its name ends in `.toml`), one table per backbone, in order:
  `[llama]` / `path = "/models/llama-1b"` / `dtype = "bfloat16"`.

The dtype is the one the backbone is published and served in: `float32`, `bfloat16` or
`float16` (vLLM's `float`, `half`, and `fp32`, `bf16`, `fp16` are accepted too); `auto`, or
none given, means the checkpoint's own. No torch is imported here: the controller reads it.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
_DTYPES = {"auto": AUTO, "float32": "float32", "float": "float32", "fp32": "float32",
           "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16",
           "half": "float16", "fp16": "float16"}
# Names become folder names (sockets, published weights) and URL path parts.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone of the deployment: its name, checkpoint folder and serving dtype."""

    name: str
    folder: Path
    dtype: str = AUTO  # a torch dtype name, or `auto`: the checkpoint's own

    @property
    def dtype_argument(self) -> str | None:
        """The backbone server's `--dtype`, or None to leave it the server's default."""
        return None if self.dtype == AUTO else self.dtype


def serving_dtype(value: str) -> str:
    """The canonical name of a serving dtype, or ValueError listing the accepted ones."""
    canonical = _DTYPES.get(value.strip().lower())
    if canonical is None:
        raise ValueError(f"dtype {value!r} is not one of auto, float32, bfloat16, float16")
    return canonical


def parse_backbones(value: str) -> tuple[BackboneSpec, ...]:
    """The backbones of `LORAFAAS_BACKBONES` (empty: none listed); ValueError names the fault."""
    value = value.strip()
    if not value:
        return ()
    specs = _from_toml(Path(value).expanduser()) if value.endswith(".toml") else tuple(
        _inline_entry(entry.strip()) for entry in value.split(",") if entry.strip())
    _check_unique(specs)
    return specs


def single_backbone(folder: Path, dtype: str = AUTO) -> BackboneSpec:
    """The one backbone of `LORAFAAS_BACKBONE`, named after its folder, in `dtype`
    (`LORAFAAS_BACKBONE_DTYPE`)."""
    return BackboneSpec(folder.name, folder, dtype)


def missing_folder(spec: BackboneSpec) -> str | None:
    """Why a backbone's folder cannot be served, or None when it holds a checkpoint."""
    if not spec.folder.is_dir():
        return f"backbone {spec.name!r}: no folder at {spec.folder}"
    if not (spec.folder / "config.json").is_file():
        return f"backbone {spec.name!r}: {spec.folder} holds no config.json"
    return None


def _inline_entry(entry: str) -> BackboneSpec:
    name, sep, rest = entry.partition("=")
    if not sep:
        raise ValueError(f"entry {entry!r} is not name=folder[:dtype]")
    folder, dtype = rest.strip(), AUTO
    head, colon, tail = folder.rpartition(":")
    if colon and "/" not in tail:  # a colon inside a folder's path is followed by a '/'
        folder, dtype = head, serving_dtype(tail)
    return _spec(name.strip(), folder, dtype)


def _from_toml(path: Path) -> tuple[BackboneSpec, ...]:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path} is not valid TOML: {error}") from error
    specs = []
    for name, table in document.items():
        if not isinstance(table, dict) or not isinstance(table.get("path"), str):
            raise ValueError(f"[{name}] in {path} needs path = \"folder\"")  # noqa: TRY004 (a setting's fault)
        unknown = sorted(set(table) - {"path", "dtype"})
        if unknown:
            raise ValueError(f"[{name}] in {path} has unknown keys {unknown}")
        specs.append(_spec(name, table["path"], serving_dtype(str(table.get("dtype", AUTO)))))
    if not specs:
        raise ValueError(f"{path} lists no backbone")
    return tuple(specs)


def _spec(name: str, folder: str, dtype: str) -> BackboneSpec:
    if not _NAME.fullmatch(name):
        raise ValueError(f"backbone name {name!r} must be 1 to 64 letters, digits, '.', '_' "
                         "or '-', starting with a letter or digit")
    if not folder:
        raise ValueError(f"backbone {name!r} has no folder")
    return BackboneSpec(name, Path(folder).expanduser(), dtype)


def _check_unique(specs: tuple[BackboneSpec, ...]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"backbone name {spec.name!r} is listed twice")
        seen.add(spec.name)
