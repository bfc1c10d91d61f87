#!/usr/bin/env python3
"""Build the wheels the GPU check needs beyond the GPU host's own packages into a folder:

    .venv/bin/python tests/gpu/build_wheels.py DIR

A lent GPU host has a CUDA torch, transformers, peft and safetensors, and no network. The
check's GPU steps need nothing more (the project's sources travel with the checkout); its
container steps drive the Docker engine with the docker SDK, which it lacks: those
pure-Python wheels, at this environment's versions, are written to DIR (pass it as
`check.py --wheels DIR`). Run it here, where the package index answers.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

# The docker SDK and what it imports; every one ships a pure-Python wheel.
PACKAGES = ("docker", "requests", "urllib3", "idna", "certifi", "charset-normalizer")


def requirements() -> list[str]:
    """The packages pinned to the versions installed here."""
    return [f"{name}=={version(name)}" for name in PACKAGES]


def build(folder: Path) -> list[Path]:
    """Download the pure-Python wheels into `folder`; the wheels it holds."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--platform", "any", "--implementation", "py",
                    # Pure-Python: any interpreter at least this one's minor version.
                    "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
                    "--abi", "none", "-d", str(folder),
                    *requirements()], check=True, timeout=600)
    return sorted(folder.glob("*.whl"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for wheel in build(Path(sys.argv[1])):
        print(wheel)
