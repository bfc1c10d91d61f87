"""A backbone checkpoint's identity, without loading it (no torch: the controller uses it).

The signature lists every file of the checkpoint folder with its size and modification
time, so that replacing or rewriting any file changes it; it is cheap where a hash of the
contents would read gigabytes at every start. The backbone server's publisher re-publishes
when it changes, and stored prefill profiles are measured afresh when its digest changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def checkpoint_signature(checkpoint_dir: Path) -> str:
    """`name:size:mtime_ns` of every file of the folder, sorted by name."""
    parts = []
    for path in sorted(checkpoint_dir.iterdir()):
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def checkpoint_digest(checkpoint_dir: Path) -> str:
    """SHA-256 (hex) of the checkpoint's signature."""
    return hashlib.sha256(checkpoint_signature(checkpoint_dir).encode()).hexdigest()
