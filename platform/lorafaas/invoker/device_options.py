"""What a function container gets of its backbone's device: the files it mounts, the GPU it
is given, and the namespaces CUDA IPC needs.

- tmpfs (a CPU host): the published folder (weights and generation files) read-only at
  `/backbone`; no GPU; private IPC and PID namespaces.
- CUDA IPC: no weights folder (the weights come over the attach channel as IPC shares);
  the folder of the generation files alone (config, generation config, tokenizer) at
  `/lorafaas/generation`; the server's GPU by a Docker device request for the NVIDIA
  runtime (seen as device 0 inside, `LORAFAAS_CUDA_DEVICE=0`); and the host's IPC and PID
  namespaces. That last is the isolation it costs: `cudaIpcOpenMemHandle` between
  processes needs them (Triton's CUDA shared-memory docs ask for `--ipc=host`, and CUDA IPC
  across PID namespaces fails with "invalid device context"), so such a container can see
  the host's processes and System V / POSIX shared memory. Network, capabilities, user,
  read-only root and memory limits stay as on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorafaas.backbone.accelerator import CUDA_IPC, TMPFS
from lorafaas.invoker.backend import GpuAccess, Mount

BACKBONE_TARGET = "/backbone"
GENERATION_TARGET = "/lorafaas/generation"
CUDA_DEVICE_ENV = "LORAFAAS_CUDA_DEVICE"  # read by runtime.attach
CONTAINER_CUDA_DEVICE = 0  # the one GPU a device request gives is device 0 inside


@dataclass(frozen=True)
class DeviceOptions:
    """The backbone's part of a container spec."""

    mounts: list[Mount]
    environment: dict[str, str]
    gpu: GpuAccess | None


def device_options(transport: str, publish_dir: Path, device: int | None) -> DeviceOptions:
    """The mounts, environment and GPU of a container of a backbone published by
    `transport` into `publish_dir` (on CUDA device `device`)."""
    if transport == TMPFS:
        return DeviceOptions([Mount(publish_dir, BACKBONE_TARGET)],
                             {"LORAFAAS_BACKBONE_DIR": BACKBONE_TARGET}, None)
    if transport == CUDA_IPC:
        if device is None:
            raise ValueError("a CUDA IPC backbone names its device")
        return DeviceOptions([Mount(publish_dir, GENERATION_TARGET)],
                             {"LORAFAAS_BACKBONE_DIR": GENERATION_TARGET,
                              CUDA_DEVICE_ENV: str(CONTAINER_CUDA_DEVICE)},
                             GpuAccess(device))
    raise ValueError(f"unknown backbone transport {transport!r}")
