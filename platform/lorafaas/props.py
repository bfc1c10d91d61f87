"""The props file (`$LORAFAAS_HOME/props`): APIHOST and AUTH lines, as OpenWhisk's .wskprops.

Kept free of heavy imports: the CLI reads it at every start.
"""

from __future__ import annotations

import os
from pathlib import Path


def read_props(path: Path) -> dict[str, str]:
    """KEY=value lines of a props file (missing file: empty)."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def write_props(path: Path, values: dict[str, str]) -> None:
    """Write the props file, readable only by its owner (it holds a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**read_props(path), **values}
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(f"{key}={value}\n" for key, value in merged.items()))
    os.chmod(temporary, 0o600)
    temporary.replace(path)
