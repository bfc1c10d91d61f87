"""CUDA IPC handles of backbone tensors, encoded for the attach protocol's JSON.

The backbone server exports each CUDA storage with `_share_cuda_()`; a runtime in another
process rebuilds it with `UntypedStorage._new_shared_cuda(...)`, mapping the same device
memory. The server must outlive every attached runtime (CUDA frees the memory with it).
torch is imported only inside the functions that need a device.
"""

from __future__ import annotations

import base64
from typing import Any

# Positions in the tuple that `_share_cuda_()` returns, for the fields that are bytes.
_BYTES_FIELDS = (1, 4, 6)


def encode_share_tuple(share: tuple[Any, ...]) -> list[Any]:
    """JSON-safe form of a `_share_cuda_()` tuple (bytes as base64 strings)."""
    return [{"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in share]


def decode_share_tuple(encoded: list[Any]) -> tuple[Any, ...]:
    """The `_share_cuda_()` tuple back from its JSON form."""
    return tuple(base64.b64decode(v["b64"]) if isinstance(v, dict) and "b64" in v else v
                 for v in encoded)


def tensor_entry(share: tuple[Any, ...], dtype: str, shape: list[int], stride: list[int],
                 offset: int) -> dict[str, Any]:
    """The descriptor of one tensor: its storage handle and its view on it."""
    return {"storage": encode_share_tuple(share), "dtype": dtype, "shape": shape,
            "stride": stride, "offset": offset}


def export_tensor(tensor: Any) -> dict[str, Any]:
    """Descriptor of a CUDA tensor (server side)."""
    storage = tensor.untyped_storage()
    return tensor_entry(storage._share_cuda_(), str(tensor.dtype).removeprefix("torch."),
                        list(tensor.shape), list(tensor.stride()), tensor.storage_offset())


def import_tensor(entry: dict[str, Any]) -> Any:
    """Rebuild a CUDA tensor from its descriptor (runtime side), without copying."""
    import torch

    storage = torch.UntypedStorage._new_shared_cuda(*decode_share_tuple(entry["storage"]))
    dtype = getattr(torch, entry["dtype"])
    tensor = torch.empty(0, dtype=dtype, device=storage.device)
    tensor.set_(storage, entry["offset"], entry["shape"], entry["stride"])
    return tensor
