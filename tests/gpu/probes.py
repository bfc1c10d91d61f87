"""What the GPU check measures with, and how it runs its second processes (stdlib only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PLATFORM = REPO / "platform"
MIB = 1024 * 1024
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass(frozen=True)
class Outcome:
    """One step's verdict and the figure it rests on."""

    status: str  # PASS, FAIL or SKIP
    figure: str


def child_environment() -> dict[str, str]:
    """The environment of a second process: the project's sources (and the wheels the
    check installed) first on its path."""
    environment = dict(os.environ)
    paths = [str(PLATFORM), *os.environ.get("LORAFAAS_GPU_CHECK_PATH", "").split(os.pathsep)]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in [*paths,
                                                           environment.get("PYTHONPATH", "")]
                                                if p)
    return environment


def run_child(role: str, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run `children.py ROLE` with `message` on stdin; its last stdout line, as JSON.
    RuntimeError naming the role and its stderr's tail when it fails."""
    done = subprocess.run([sys.executable, str(HERE / "children.py"), role],
                          input=json.dumps(message), capture_output=True, text=True,
                          timeout=timeout_s, env=child_environment(), check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"child {role} exited {done.returncode}: {tail}")
    return dict(json.loads(lines[-1]))


def nvidia_smi_used_mib(pid: int) -> int | None:
    """Device memory nvidia-smi charges to a process, in MiB (None: no nvidia-smi, or the
    process holds no context)."""
    used = nvidia_smi_processes()
    return None if used is None else used.get(pid)


def nvidia_smi_processes() -> dict[int, int] | None:
    """pid -> MiB of every compute process nvidia-smi lists (None without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                           "--format=csv,noheader,nounits"], capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0:
        return None
    used: dict[int, int] = {}
    for line in done.stdout.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().isdigit():
            used[int(pid)] = used.get(int(pid), 0) + int(mib)
    return used


def docker_engine() -> str | None:
    """Why no Docker engine can run the container steps, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker command on this host"
    done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=30, check=False)
    return None if done.returncode == 0 else "the Docker engine does not answer"
