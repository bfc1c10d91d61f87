"""The package is `lorafaas` in the `platform/` folder; the stdlib `platform` stays itself."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_platform_is_the_real_one() -> None:
    assert callable(platform.system) and platform.system()
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()


def test_controller_import_does_not_load_torch() -> None:
    code = "import sys, lorafaas.controller.app; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO_ROOT)
    assert output.stdout.strip() == "False"


def test_runtime_imports_nothing_of_the_host_side() -> None:
    sources = (REPO_ROOT / "platform" / "lorafaas" / "runtime").rglob("*.py")
    for source in sources:
        text = source.read_text()
        for host_package in ("lorafaas.controller", "lorafaas.invoker", "lorafaas.backbone",
                             "lorafaas.registry"):
            assert host_package not in text, f"{source.name} imports {host_package}"
