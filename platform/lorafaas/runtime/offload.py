"""Move a function's own artifacts between accelerator memory and host memory.

A function container holds two kinds of tensors of its own on the accelerator: its adapter
weights (the LoRA A/B matrices, DoRA magnitudes, `modules_to_save` copies) and cached
buffers that are not weights (rotary `inv_freq`, rebuilt at attach). The backbone's weights
are shared with every other container and never move. Offloading copies the container's
tensors into a host store and leaves empty tensors in the model, so the accelerator memory
is released and a forward pass cannot run on half-present weights; restoring copies them
back. On CUDA the host store is pinned memory and the copies are asynchronous, synchronized
before the move is timed as done. On a CPU host the accelerator is host memory too: the
moves are still real copies into and out of a separate store, so their bytes and time are
measured the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

HOST = "host"
ACCELERATOR = "accelerator"
# Parameter names of the adapter's own weights in a peft model.
ADAPTER_MARKERS = ("lora_", ".modules_to_save.")


@dataclass(frozen=True)
class Move:
    """One move of a container's artifacts: where they are now, bytes copied, time taken."""

    moved: str  # HOST or ACCELERATOR
    bytes: int
    ms: float

    def as_json(self) -> dict[str, object]:
        """The move as the runtime protocol's answer."""
        return {"moved": self.moved, "bytes": self.bytes, "ms": round(self.ms, 3)}


@dataclass(frozen=True)
class _Slot:
    """Where one tensor lives in the model: a module's parameter or buffer."""

    module: torch.nn.Module
    name: str
    is_parameter: bool

    def get(self) -> torch.Tensor:
        table = self.module._parameters if self.is_parameter else self.module._buffers
        tensor = table[self.name]
        assert tensor is not None
        return tensor

    def set(self, tensor: torch.Tensor) -> None:
        if self.is_parameter:
            # The same Parameter object keeps its place; only its storage changes.
            self.get().data = tensor
        else:
            self.module._buffers[self.name] = tensor


@dataclass(frozen=True)
class _TensorSlot:
    """A tensor held outside any module (the native engine's adapter weights): its storage
    is swapped in place, so whoever holds the tensor sees the move."""

    tensor: torch.Tensor

    def get(self) -> torch.Tensor:
        return self.tensor

    def set(self, tensor: torch.Tensor) -> None:
        self.tensor.data = tensor


class ArtifactTiers:
    """The container's own tensors in a model (or given as tensors), and which tier holds
    them."""

    def __init__(self, model: torch.nn.Module | None = None,
                 tensors: list[torch.Tensor] | None = None) -> None:
        self._slots: list[_Slot | _TensorSlot] = []
        if model is not None:
            self._slots.extend(_own_tensors(model))
        self._slots.extend(_TensorSlot(t) for t in _distinct(tensors or []))
        self._host: list[torch.Tensor] | None = None
        tensors = [slot.get() for slot in self._slots]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.bytes = sum(_nbytes(t) for t in tensors)

    @property
    def tier(self) -> str:
        """HOST when offloaded, else ACCELERATOR."""
        return HOST if self._host is not None else ACCELERATOR

    @property
    def accelerator_bytes(self) -> int:
        """Bytes of the container's own tensors now in accelerator memory."""
        return 0 if self._host is not None else self.bytes

    def offload(self) -> Move:
        """Copy the tensors to host memory and release them on the accelerator."""
        if self._host is not None:
            return Move(HOST, 0, 0.0)
        started = time.monotonic()
        pinned = self.device.type == "cuda"
        store = []
        for slot in self._slots:
            tensor = slot.get()
            host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=pinned)
            host.copy_(tensor, non_blocking=pinned)
            store.append(host)
        _synchronize(self.device)
        for slot, host in zip(self._slots, store, strict=True):
            slot.set(torch.empty(0, dtype=host.dtype, device=self.device))
        self._host = store
        if pinned:
            torch.cuda.empty_cache()  # give the blocks back to the device, not to this process
        return Move(HOST, self.bytes, (time.monotonic() - started) * 1000)

    def restore(self) -> Move:
        """Copy the tensors back to accelerator memory and drop the host store."""
        if self._host is None:
            return Move(ACCELERATOR, 0, 0.0)
        started = time.monotonic()
        non_blocking = self.device.type == "cuda"
        for slot, host in zip(self._slots, self._host, strict=True):
            device_tensor = torch.empty(host.shape, dtype=host.dtype, device=self.device)
            device_tensor.copy_(host, non_blocking=non_blocking)
            slot.set(device_tensor)
        _synchronize(self.device)
        self._host = None
        return Move(ACCELERATOR, self.bytes, (time.monotonic() - started) * 1000)


def _own_tensors(model: torch.nn.Module) -> list[_Slot]:
    """The adapter's parameters and the non-persistent buffers, each tensor once."""
    slots: list[_Slot] = []
    seen: set[int] = set()

    def take(module: torch.nn.Module, name: str, tensor: torch.Tensor, parameter: bool) -> None:
        if id(tensor) not in seen:  # tied tensors move once
            seen.add(id(tensor))
            slots.append(_Slot(module, name, parameter))

    for module_name, module in model.named_modules():
        for name, parameter in module._parameters.items():
            if parameter is not None and _is_adapter_weight(f"{module_name}.{name}"):
                take(module, name, parameter, True)
        for name, buffer in module._buffers.items():
            # Persistent buffers are published with the backbone's weights and shared.
            if buffer is not None and name in module._non_persistent_buffers_set:
                take(module, name, buffer, False)
    return slots


def _distinct(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list({id(t): t for t in tensors}.values())  # a tensor held twice moves once


def _is_adapter_weight(name: str) -> bool:
    return any(marker in name for marker in ADAPTER_MARKERS)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
