"""The GPU check (tests/gpu/check.py) in its skip mode, and its pure parts, without a GPU."""

from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

GPU_DIR = Path(__file__).resolve().parents[1] / "gpu"
STEPS = ("two-processes", "backbone-server", "function-container", "two-containers",
         "batch-decode")


@pytest.fixture
def check() -> Iterator[ModuleType]:
    """check.py imported as its command imports it (its folder first on the path)."""
    sys.path.insert(0, str(GPU_DIR))
    try:
        yield importlib.import_module("check")
    finally:
        sys.path.remove(str(GPU_DIR))


def test_without_a_gpu_every_step_is_skipped_with_the_reason_and_nothing_passes() -> None:
    done = subprocess.run([sys.executable, str(GPU_DIR / "check.py")], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("SKIP: no GPU to check: torch ")
    assert "CPU build" in lines[0] or "no CUDA device" in lines[0]
    assert lines[1:] == [f"[SKIP] {step}: no CUDA device" for step in STEPS]
    assert "[PASS]" not in done.stdout


def test_container_steps_skip_never_pass_without_an_engine_or_image(check: ModuleType) -> None:
    from probes import FAIL, PASS, SKIP, Outcome

    def would_pass() -> Outcome:
        return Outcome(PASS, "x")

    for step in ("function-container", "two-containers"):
        outcome = check._one_step(step, would_pass, "no docker command on this host", 0.0)
        assert outcome.status == SKIP and "no docker" in outcome.figure
    late = check._one_step("two-processes", would_pass, None, -10_000.0)
    assert late.status == SKIP and "deadline" in late.figure

    def breaks() -> Outcome:
        raise RuntimeError("child attach exited 1")

    broken = check._one_step("backbone-server", breaks, None, time.monotonic())
    assert broken.status == FAIL and "child attach exited 1" in broken.figure


def test_no_image_is_a_reason_to_skip_the_containers(check: ModuleType,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "docker_engine", lambda: None)
    assert "--image" in check.why_no_containers(None)
    monkeypatch.setattr(check, "docker_engine", lambda: "the Docker engine does not answer")
    assert check.why_no_containers("img") == "the Docker engine does not answer"


def _on_path(folder: Path, name: str, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_nvidia_smi_is_read_per_process(check: ModuleType, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from probes import nvidia_smi_processes, nvidia_smi_used_mib

    _on_path(tmp_path, "nvidia-smi", "printf '4242, 500\\n4242, 12\\n77, 9000\\n'\n",
             monkeypatch)
    assert nvidia_smi_processes() == {4242: 512, 77: 9000}
    assert nvidia_smi_used_mib(4242) == 512 and nvidia_smi_used_mib(1) is None


def test_the_wheels_script_pins_the_docker_sdk_at_this_environments_versions() -> None:
    sys.path.insert(0, str(GPU_DIR))
    try:
        build_wheels = importlib.import_module("build_wheels")
    finally:
        sys.path.remove(str(GPU_DIR))
    from importlib.metadata import version

    pins = build_wheels.requirements()
    assert f"docker=={version('docker')}" in pins
    assert all("==" in pin for pin in pins)
