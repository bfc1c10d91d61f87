"""The runtime image's variant: a CPU or a CUDA build of torch, chosen when the image is
built, from the same setting and host facts as the backbone's transport.

The variant is named in the image tag (`<version>-<variant>-<hash>`), enters the hash and
the wheelhouse's key, and has a wheelhouse of its own, so that a CPU image is never
reused where a CUDA one is wanted. The CPU variant takes the requirements as they are
(torch's CPU wheel, which this project's hosts find); the CUDA variant pins torch's CUDA
build (`torch==<version>+<flavour>`) from PyTorch's index for that flavour.
"""

from __future__ import annotations

import enum
import re

from lorafaas.backbone.accelerator import AcceleratorSetting, HostFacts, choose_transport

CUDA_FLAVOUR = "cu128"  # the CUDA build of torch the CUDA variant takes
TORCH_INDEX = "https://download.pytorch.org/whl/{flavour}"
_TORCH_PIN = re.compile(r"^torch==(?P<version>[0-9][0-9A-Za-z.]*)(?:\+\S+)?[ \t]*$", re.MULTILINE)


class ImageVariant(enum.StrEnum):
    """Which torch build the runtime image holds."""

    CPU = "cpu"
    CUDA = "cuda"


def choose_variant(setting: AcceleratorSetting, facts: HostFacts) -> ImageVariant:
    """CUDA where the backbone would be published by CUDA IPC on this host, else CPU
    (AcceleratorUnavailable where `cuda` is asked on a host without the device)."""
    return ImageVariant.CUDA if choose_transport(setting, facts).is_cuda else ImageVariant.CPU


def variant_requirements(requirements: str, variant: ImageVariant,
                         flavour: str = CUDA_FLAVOUR) -> str:
    """The requirements of a variant: as written for CPU; with torch pinned to its CUDA
    build for CUDA (ValueError when no `torch==X` line is there to pin)."""
    if variant is ImageVariant.CPU:
        return requirements
    if _TORCH_PIN.search(requirements) is None:
        raise ValueError("the runtime requirements pin no torch==VERSION line")
    return _TORCH_PIN.sub(lambda m: f"torch=={m.group('version')}+{flavour}", requirements)


def index_arguments(variant: ImageVariant, flavour: str = CUDA_FLAVOUR) -> list[str]:
    """pip's extra index for a variant's torch (none for CPU)."""
    if variant is ImageVariant.CPU:
        return []
    return ["--extra-index-url", TORCH_INDEX.format(flavour=flavour)]


def wheelhouse_name(variant: ImageVariant) -> str:
    """The variant's wheelhouse folder under the home (CPU keeps the historical name)."""
    return "wheelhouse" if variant is ImageVariant.CPU else f"wheelhouse-{variant.value}"


GPU_SMOKE_TEST = ("import torch; assert torch.cuda.is_available(), 'no CUDA device'; "
                  "print(torch.version.cuda, torch.cuda.get_device_name(0))")
