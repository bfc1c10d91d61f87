#!/usr/bin/env python3
"""The GPU check: the CUDA path from its smallest step to the whole, on one GPU.

    python3 tests/gpu/check.py [--device N] [--wheels DIR] [--image TAG]

Runs with the host's own python3 (a CUDA build of torch, transformers, peft, safetensors);
the project's sources come from this checkout, and what else it lacks from `--wheels`
(made by `tests/gpu/build_wheels.sh DIR`). Each step prints one line,
`[PASS|FAIL|SKIP] step: figure`:

1. two-processes: a second process maps a tensor of the first over CUDA IPC (same memory)
   and writes to it (the read-only detection: CUDA IPC mappings are writable).
2. backbone-server: the server publishes the demo backbone over CUDA IPC; a second
   process attaches on a channel with no extra device memory (memory_allocated, nvidia-smi)
   and its greedy tokens equal peft's on a private copy.
3. function-container: a function container on the GPU answers what peft answers.
4. two-containers: two containers share the backbone, the weights counted once.
5. batch-decode: the platform's batched decode, 8 rows against 1.

Steps 3 and 4 need a Docker engine with the NVIDIA runtime and a CUDA runtime image
(`--image`): without them they print SKIP, never PASS. Without a CUDA device every step
prints SKIP and the check says why. It exits 1 when a step failed, else 0, and ends within
its deadline (4 minutes): a step that would start past it is skipped, naming the deadline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from probes import FAIL, PASS, PLATFORM, SKIP, Outcome, docker_engine

DEADLINE_S = 240.0
STEPS = ("two-processes", "backbone-server", "function-container", "two-containers",
         "batch-decode")
CONTAINER_STEPS = ("function-container", "two-containers")


def report(step: str, outcome: Outcome) -> None:
    """One step's line."""
    print(f"[{outcome.status}] {step}: {outcome.figure}", flush=True)


def install_wheels(wheels: Path, target: Path) -> None:
    """The project's missing pure-Python dependencies, from a folder of wheels, onto the
    path of this process and of its children (no network: `--no-index`)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                    "--no-deps", "--target", str(target), *map(str, sorted(
                        wheels.glob("*.whl")))], check=True, timeout=120)
    sys.path.insert(0, str(target))
    os.environ["LORAFAAS_GPU_CHECK_PATH"] = str(target)


def why_no_gpu() -> str | None:
    """Why this host cannot run the check (None: it can)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return None


def why_no_containers(image: str | None) -> str | None:
    """Why the container steps cannot run (None: they can)."""
    engine = docker_engine()
    if engine is not None:
        return engine
    if not image:
        return "no CUDA runtime image given (--image; build one with `python -m " \
               "lorafaas.images --accelerator cuda`)"
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker SDK is missing (tests/gpu/build_wheels.sh, then --wheels)"
    return None


def run_steps(args: argparse.Namespace, started: float) -> list[str]:
    """Every step in order; their statuses."""
    import gpu_steps
    import torch

    torch.cuda.set_device(args.device)
    print(f"GPU check on {torch.cuda.get_device_name(args.device)} (torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}), device {args.device}", flush=True)
    no_containers = why_no_containers(args.image)
    work = Path(tempfile.mkdtemp(prefix="lf-gpu-", dir="/tmp"))  # short socket paths
    context = gpu_steps.Context(work, args.device)
    steps: dict[str, Callable[[], Outcome]] = {
        "two-processes": lambda: gpu_steps.two_processes(context),
        "backbone-server": lambda: gpu_steps.backbone_server(context),
        "function-container": lambda: _container_step("function_container", context, args),
        "two-containers": lambda: _container_step("two_containers", context, args),
        "batch-decode": lambda: gpu_steps.batch_decode(context)}
    statuses = []
    try:
        for name in STEPS:
            outcome = _one_step(name, steps[name], no_containers, started)
            report(name, outcome)
            statuses.append(outcome.status)
    finally:
        context.stop()
    return statuses


def _one_step(name: str, step: Callable[[], Outcome], no_containers: str | None,
              started: float) -> Outcome:
    if name in CONTAINER_STEPS and no_containers is not None:
        return Outcome(SKIP, no_containers)
    if time.monotonic() - started > DEADLINE_S:
        return Outcome(SKIP, f"past the check's deadline of {DEADLINE_S:.0f} s")
    try:
        return step()
    except Exception as error:  # noqa: BLE001 - a step that breaks is a FAIL, with why
        traceback.print_exc()
        return Outcome(FAIL, f"{type(error).__name__}: {error}")


def _container_step(name: str, context: object, args: argparse.Namespace) -> Outcome:
    import container_steps

    step: Callable[[object, str], Outcome] = getattr(container_steps, name)
    return step(context, args.image)


def main(argv: list[str] | None = None) -> int:
    """Run the check; 1 when a step failed."""
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--wheels", type=Path, help="folder of wheels the host lacks")
    parser.add_argument("--image", default=os.environ.get("LORAFAAS_GPU_CHECK_IMAGE"),
                        help="the CUDA runtime image for the container steps")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(PLATFORM))
    if args.wheels is not None:
        install_wheels(args.wheels, Path(tempfile.mkdtemp(prefix="lf-gpu-wheels-")))
    reason = why_no_gpu()
    if reason is not None:
        print(f"SKIP: no GPU to check: {reason}", flush=True)
        for name in STEPS:
            report(name, Outcome(SKIP, "no CUDA device"))
        return 0
    statuses = run_steps(args, started)
    print(f"GPU check: {statuses.count(PASS)} passed, {statuses.count(FAIL)} failed, "
          f"{statuses.count(SKIP)} skipped in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if FAIL in statuses else 0


if __name__ == "__main__":
    raise SystemExit(main())
