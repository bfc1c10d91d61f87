"""Which transport a backbone server publishes with, from the setting and the host's facts.

`LORAFAAS_ACCELERATOR` is `auto` (CUDA IPC where the host has an NVIDIA GPU that the
server's torch can use, else tmpfs), `cpu` (tmpfs whatever the host has) or `cuda` /
`cuda:N` (CUDA IPC on device N, default 0; refused at start where there is no such
device). The choice is a pure function of the setting and `HostFacts`; `host_facts` reads
them (the driver's device list, and, only where it lists a GPU, the device count of the
server's torch, asked in a child process: the platform itself never imports torch).

Standard library only: the controller and the image builder use it.
"""

from __future__ import annotations

import enum
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TMPFS = "tmpfs"
CUDA_IPC = "cuda-ipc"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one folder per GPU the driver drives
TORCH_PROBE_TIMEOUT_S = 60.0
_SETTING = re.compile(r"(auto|cpu|cuda)(?::(\d{1,3}))?")


class AcceleratorKind(enum.StrEnum):
    """What the setting asks for."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class AcceleratorUnavailable(RuntimeError):
    """The setting asks for a CUDA device this host does not have; names both."""


@dataclass(frozen=True)
class AcceleratorSetting:
    """`LORAFAAS_ACCELERATOR` parsed: the kind and, for CUDA, the device index asked."""

    kind: AcceleratorKind
    device: int | None = None  # None: device 0 where CUDA is chosen

    def __str__(self) -> str:
        return self.kind.value if self.device is None else f"{self.kind.value}:{self.device}"


def parse_accelerator(value: str) -> AcceleratorSetting:
    """`auto`, `cpu`, `cuda` or `cuda:N` (also `auto:N`); ValueError naming the choices."""
    match = _SETTING.fullmatch(value.strip())
    if match is None or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ValueError("must be auto, cpu, cuda or cuda:N (N the device index)")
    device = int(match.group(2)) if match.group(2) is not None else None
    return AcceleratorSetting(AcceleratorKind(match.group(1)), device)


@dataclass(frozen=True)
class HostFacts:
    """What the host offers: the GPUs its NVIDIA driver lists, and how many of them the
    backbone server's torch can use (0 with a CPU build of torch)."""

    driver_gpus: int
    torch_cuda_devices: int

    @property
    def cuda_devices(self) -> int:
        """Devices a CUDA publisher can use here."""
        return min(self.driver_gpus, self.torch_cuda_devices)


@dataclass(frozen=True)
class TransportChoice:
    """How a backbone server publishes: tmpfs, or CUDA IPC on one device; and why."""

    transport: str  # TMPFS or CUDA_IPC
    device: int | None  # the CUDA device index (host numbering); None on tmpfs
    reason: str

    @property
    def is_cuda(self) -> bool:
        """Whether the weights stay in device memory, shared by CUDA IPC."""
        return self.transport == CUDA_IPC

    def server_arguments(self) -> list[str]:
        """The backbone server's command-line options for this choice."""
        device = [] if self.device is None else ["--device", str(self.device)]
        return ["--transport", self.transport, *device]


def choose_transport(setting: AcceleratorSetting, facts: HostFacts) -> TransportChoice:
    """The transport for the setting on a host with these facts; AcceleratorUnavailable
    where `cuda` is asked and the device is not there."""
    if setting.kind is AcceleratorKind.CPU:
        return TransportChoice(TMPFS, None, "LORAFAAS_ACCELERATOR=cpu")
    device = setting.device if setting.device is not None else 0
    usable = facts.cuda_devices
    if device < usable:
        return TransportChoice(CUDA_IPC, device, f"cuda:{device} of {usable} usable GPUs "
                                                 f"(LORAFAAS_ACCELERATOR={setting})")
    if setting.kind is AcceleratorKind.AUTO:
        return TransportChoice(TMPFS, None, _why_not_cuda(facts, device))
    raise AcceleratorUnavailable(f"LORAFAAS_ACCELERATOR={setting} asks for CUDA device "
                                 f"{device}, but {_why_not_cuda(facts, device)}")


def _why_not_cuda(facts: HostFacts, device: int) -> str:
    if facts.driver_gpus == 0:
        return "the host has no NVIDIA GPU (tmpfs)"
    if facts.torch_cuda_devices == 0:
        return (f"the NVIDIA driver lists {facts.driver_gpus} GPUs but torch has no CUDA "
                f"device (a CPU build?) (tmpfs)")
    return f"device {device} is not among the {facts.cuda_devices} usable GPUs (tmpfs)"


def host_facts(driver_dir: Path = NVIDIA_GPUS, python: str = sys.executable) -> HostFacts:
    """The host's GPUs as the driver lists them, and as the server's torch sees them
    (probed only where the driver lists one: a CPU host never pays for the import)."""
    driver_gpus = len(list(driver_dir.iterdir())) if driver_dir.is_dir() else 0
    if driver_gpus == 0:
        return HostFacts(0, 0)
    return HostFacts(driver_gpus, torch_cuda_devices(python))


def torch_cuda_devices(python: str = sys.executable) -> int:
    """`torch.cuda.device_count()` in a child process of `python` (0 when it fails)."""
    try:
        probe = subprocess.run(
            [python, "-c", "import torch; print(torch.cuda.device_count())"],
            capture_output=True, text=True, timeout=TORCH_PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    lines = probe.stdout.strip().splitlines()
    return int(lines[-1]) if probe.returncode == 0 and lines and lines[-1].isdigit() else 0
