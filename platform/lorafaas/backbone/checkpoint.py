"""A backbone checkpoint's identity and serving facts, without loading it (no torch: the
controller uses it).

The signature lists every file of the checkpoint folder with its size and modification
time, so that replacing or rewriting any file changes it; it is cheap where a hash of the
contents would read gigabytes at every start. The backbone server's publisher re-publishes
when it changes, and stored prefill profiles are measured afresh when its digest changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def checkpoint_signature(checkpoint_dir: Path) -> str:
    """`name:size:mtime_ns` of every file of the folder, sorted by name."""
    parts = []
    for path in sorted(checkpoint_dir.iterdir()):
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def checkpoint_digest(checkpoint_dir: Path, dtype: str | None = None) -> str:
    """SHA-256 (hex) of the checkpoint's signature (and of the serving dtype, when given)."""
    signature = checkpoint_signature(checkpoint_dir)
    if dtype is not None:
        signature += f"|dtype:{dtype}"
    return hashlib.sha256(signature.encode()).hexdigest()


SERVING_DTYPES = ("float32", "bfloat16", "float16")
AUTO_DTYPE = "auto"


def checkpoint_dtype(checkpoint_dir: Path) -> str:
    """The checkpoint's own dtype: `dtype` in its config, else `torch_dtype`, else float32
    (a dtype the platform does not serve, float64 say, is served as float32)."""
    config = read_config(checkpoint_dir)
    for values in (config, _text_config(config)):
        for key in ("dtype", "torch_dtype"):
            value = str(values.get(key) or "").removeprefix("torch.")
            if value:
                return value if value in SERVING_DTYPES else "float32"
    return "float32"


def serving_dtype(checkpoint_dir: Path, requested: str = AUTO_DTYPE) -> str:
    """The dtype the backbone is published and served in: `requested`, or with `auto` the
    checkpoint's own; ValueError naming the choices for anything else."""
    if requested == AUTO_DTYPE:
        return checkpoint_dtype(checkpoint_dir)
    if requested not in SERVING_DTYPES:
        raise ValueError(f"serving dtype {requested!r} is not one of "
                         f"{', '.join((AUTO_DTYPE, *SERVING_DTYPES))}")
    return requested


def read_config(checkpoint_dir: Path) -> dict[str, Any]:
    """The checkpoint's config.json as a dict ({} when it is not a JSON object)."""
    values = json.loads((checkpoint_dir / "config.json").read_text())
    return values if isinstance(values, dict) else {}


def context_length(config: dict[str, Any]) -> int | None:
    """The longest sequence (prompt plus output) the model's positions cover, if it says."""
    for values in (config, _text_config(config)):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            if isinstance(values.get(key), int) and values[key] > 0:
                return int(values[key])
    return None


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    # Multimodal checkpoints hold the language model's values under text_config.
    text = config.get("text_config")
    return text if isinstance(text, dict) else {}
