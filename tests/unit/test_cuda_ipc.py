"""CUDA IPC descriptors: the JSON encoding is unit-tested; the device path needs a GPU."""

from __future__ import annotations

import json

import pytest

from lorafaas.wire.cuda_ipc import decode_share_tuple, encode_share_tuple, tensor_entry


def test_share_tuple_round_trips_through_json() -> None:
    share = (0, b"\x00\x01handle", 4096, 0, b"refcounter", 8, b"event", True)
    encoded = json.loads(json.dumps(encode_share_tuple(share)))
    assert decode_share_tuple(encoded) == share


def test_tensor_entry_keeps_the_view() -> None:
    entry = tensor_entry((0, b"h", 16, 0, b"r", 0, b"e", False), "float16", [2, 4], [4, 1], 0)
    assert entry["shape"] == [2, 4] and entry["stride"] == [4, 1] and entry["dtype"] == "float16"


@pytest.mark.gpu
def test_tensor_shared_over_cuda_ipc_is_the_same_memory() -> None:
    import torch
    import torch.multiprocessing as mp

    from lorafaas.wire.cuda_ipc import export_tensor

    tensor = torch.arange(16, dtype=torch.float32, device="cuda").reshape(4, 4)
    entry = export_tensor(tensor)
    context = mp.get_context("spawn")
    with context.Pool(1) as pool:
        total = pool.apply(_sum_in_other_process, (entry,))
    assert total == float(tensor.sum())


def _sum_in_other_process(entry: dict) -> float:  # type: ignore[type-arg]
    from lorafaas.wire.cuda_ipc import import_tensor

    return float(import_tensor(entry).sum())
