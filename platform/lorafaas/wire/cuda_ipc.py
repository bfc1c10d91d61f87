"""CUDA IPC shares of backbone tensors, encoded for the attach protocol's JSON.

The backbone server holds every tensor it publishes in device memory for as long as it
runs. Tensors are grouped by the storage they view (tied weights are one storage, so they
are shared once), and each storage is exported with `_share_cuda_()` once per receiver:
every call wraps the storage in a fresh cross-process reference count (one slot of
torch's `CudaIPCRefCountersFile`) that the receiver's storage gives back when it is freed,
so the server's memory outlives the last receiver, as torch.multiprocessing does it
(`reduce_tensor` calls `_share_cuda_()` for each send, `rebuild_cuda_tensor` imports it).

A descriptor (see `wire/attach.py`) holds `views` (name -> storage index, dtype, shape,
stride, offset), made once, and `storages` (one encoded share tuple per storage), made per
receiver. The importing side initializes CUDA first (torch's own rebuild path calls
`torch.cuda._lazy_init()`; `_new_shared_cuda` on an uninitialized CUDA is known to crash)
and opens each storage on its own device index: a container given one GPU by the NVIDIA
runtime sees it as device 0, whatever its number on the host.

Read-only: not possible with these handles. `cudaIpcOpenMemHandle` maps the exporter's
allocation read-write (its only flag is `cudaIpcMemLazyEnablePeerAccess`); read-only
device mappings need the driver's virtual memory API (`cuMemSetAccess` with
`CU_MEM_ACCESS_FLAGS_PROT_READ`) on memory allocated with `cuMemCreate`, which torch's
caching allocator does not export. So a receiver *can* write the shared weights
(`IMPORTS_READ_ONLY` is False): the runtime never does (LoRA is applied unmerged and
inference runs under `torch.inference_mode`), and `tests/gpu/check.py` detects whether a
driver behaves otherwise. torch is imported only inside the functions that need a device.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from typing import Any

# Whether a receiver's mapping refuses writes (see the module docstring: it does not).
IMPORTS_READ_ONLY = False
# Positions in the tuple that `_share_cuda_()` returns, for the fields that are bytes.
_BYTES_FIELDS = (1, 4, 6)
_DEVICE, _HANDLE, _SIZE = 0, 1, 2


def encode_share_tuple(share: tuple[Any, ...]) -> list[Any]:
    """JSON-safe form of a `_share_cuda_()` tuple (bytes as base64 strings)."""
    return [{"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in share]


def decode_share_tuple(encoded: list[Any]) -> tuple[Any, ...]:
    """The `_share_cuda_()` tuple back from its JSON form."""
    return tuple(base64.b64decode(v["b64"]) if isinstance(v, dict) and "b64" in v else v
                 for v in encoded)


def tensor_view(storage: int, dtype: str, shape: list[int], stride: list[int],
                offset: int) -> dict[str, Any]:
    """The descriptor of one tensor: which storage it views, and how."""
    return {"storage": storage, "dtype": dtype, "shape": shape, "stride": stride,
            "offset": offset}


def group_by_storage(tensors: dict[str, Any]) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The distinct storages of the tensors (each once, tied ones included) and each
    tensor's view on its storage."""
    storages: list[Any] = []
    index: dict[int, int] = {}
    views: dict[str, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        storage = tensor.untyped_storage()
        key = storage.data_ptr() if storage.nbytes() else -1 - len(storages)
        if key not in index:
            index[key] = len(storages)
            storages.append(storage)
        views[name] = tensor_view(index[key], str(tensor.dtype).removeprefix("torch."),
                                  list(tensor.shape), list(tensor.stride()),
                                  tensor.storage_offset())
    return storages, views


def share_storages(storages: Iterable[Any],
                   export: Callable[[Any], tuple[Any, ...]] | None = None) -> list[list[Any]]:
    """One receiver's shares: a fresh `_share_cuda_()` of every storage (a reference-count
    slot each), encoded. `export` stands in for `_share_cuda_` in tests."""
    make = export or (lambda storage: storage._share_cuda_())
    return [encode_share_tuple(make(storage)) for storage in storages]


def import_tensors(descriptor: dict[str, Any], device: int | None = None) -> dict[str, Any]:
    """The descriptor's tensors, mapped from the exporter's device memory (no copy).

    `device`: this process's index of the exporter's GPU (None: the exporter's own)."""
    import torch

    torch.cuda.init()  # before _new_shared_cuda, as torch's rebuild_cuda_tensor does
    storages = [import_storage(decode_share_tuple(share), device)
                for share in descriptor["storages"]]
    return {name: view_of(storages[view["storage"]], view)
            for name, view in descriptor["views"].items()}


def import_storage(share: tuple[Any, ...], device: int | None = None) -> Any:
    """One shared storage, opened on `device` (None: the index in the share)."""
    import torch

    index = share[_DEVICE] if device is None else device
    if share[_HANDLE] is None or share[_SIZE] == 0:
        return torch.UntypedStorage(0, device=torch.device("cuda", index))
    return torch.UntypedStorage._new_shared_cuda(index, *share[1:])


def view_of(storage: Any, view: dict[str, Any]) -> Any:
    """The tensor a view describes, on `storage`."""
    import torch

    tensor = torch.empty(0, dtype=getattr(torch, view["dtype"]), device=storage.device)
    tensor.set_(storage, view["offset"], view["shape"], view["stride"])
    return tensor
