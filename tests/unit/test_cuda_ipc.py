"""CUDA IPC shares: grouping by storage, one share per receiver, the epoch, the JSON
encoding; the device path runs where a GPU is (and in tests/gpu/check.py)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from lorafaas.backbone.channels import Channel, Channels, CudaShares
from lorafaas.wire.cuda_ipc import (
    decode_share_tuple,
    encode_share_tuple,
    group_by_storage,
    share_storages,
)


def test_share_tuple_round_trips_through_json() -> None:
    share = (0, b"\x00\x01handle", 4096, 0, b"refcounter", 8, b"event", True)
    encoded = json.loads(json.dumps(encode_share_tuple(share)))
    assert decode_share_tuple(encoded) == share


def test_each_storage_is_shared_once_and_each_tensor_is_a_view_on_it() -> None:
    embed = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    norm = torch.ones(4, dtype=torch.bfloat16)
    tensors = {"embed": embed, "embed_tail": embed[1:], "lm_head": embed, "norm": norm}
    storages, views = group_by_storage(tensors)
    assert len(storages) == 2  # embed (tied and sliced views included) and norm
    assert views["embed"]["storage"] == views["lm_head"]["storage"] == 0
    assert views["embed_tail"] == {"storage": 0, "dtype": "float32", "shape": [2, 4],
                                   "stride": [4, 1], "offset": 4}
    assert views["norm"] == {"storage": 1, "dtype": "bfloat16", "shape": [4], "stride": [1],
                             "offset": 0}


class FakeExport:
    """Stands in for `_share_cuda_`: each call takes the next reference-count slot."""

    def __init__(self) -> None:
        self.slots = itertools.count()
        self.calls: list[Any] = []

    def __call__(self, storage: Any) -> tuple[Any, ...]:
        self.calls.append(storage)
        return (1, b"handle-" + str(id(storage)).encode(), storage.nbytes(), 0,
                b"/torch_refcounts", next(self.slots), b"event", False)


def test_every_receiver_gets_its_own_reference_count_slot_of_every_storage() -> None:
    storages, views = group_by_storage({"a": torch.zeros(4), "b": torch.zeros(2)})
    export = FakeExport()
    base = {"transport": "cuda-ipc", "views": views, "epoch": "e1"}
    shares = CudaShares(base, storages, export)
    first, second = shares.share("c1"), shares.share("c2")
    assert len(export.calls) == 4  # two storages, two receivers
    slots = [[decode_share_tuple(s)[5] for s in d["storages"]] for d in (first, second)]
    assert slots == [[0, 1], [2, 3]]  # never one slot handed to two receivers
    assert first["views"] == second["views"] == views and first["epoch"] == "e1"
    assert "storages" not in base  # what `describe` answers stays small
    again = shares.share("c1")  # an attach again is a receiver again
    assert [decode_share_tuple(s)[5] for s in again["storages"]] == [4, 5]
    assert shares.attaches == {"c1": 2, "c2": 1}
    shares.release("c1")
    assert shares.attaches == {"c2": 1}


def test_share_storages_calls_share_cuda_by_default() -> None:
    class Storage:
        def _share_cuda_(self) -> tuple[Any, ...]:
            return (0, b"h", 4, 0, b"r", 7, b"e", True)

    assert share_storages([Storage()]) == [[0, {"b64": "aA=="}, 4, 0, {"b64": "cg=="}, 7,
                                            {"b64": "ZQ=="}, True]]


async def test_attach_and_epoch_replies_name_the_servers_epoch() -> None:
    storages, views = group_by_storage({"a": torch.zeros(4)})
    channels = Channels(CudaShares({"transport": "cuda-ipc", "views": views}, storages,
                                   FakeExport()), epoch="start-1")
    channel = Channel("c1", Path("/x/attach.sock"), None, 0)  # type: ignore[arg-type]
    attach = await channels.answer(channel, {"op": "attach"})
    assert attach["ok"] and attach["epoch"] == "start-1" and channel.attached
    assert len(attach["backbone"]["storages"]) == 1
    assert await channels.answer(channel, {"op": "epoch"}) == {"ok": True, "epoch": "start-1"}
    refused = await channels.answer(channel, {"op": "list"})
    assert not refused["ok"] and "attach, detach, epoch" in refused["error"]


@pytest.mark.gpu
def test_a_tensor_shared_over_cuda_ipc_is_the_same_memory_in_another_process() -> None:
    """Two processes: the worker initializes CUDA before it imports (it would hang or crash
    otherwise), and reads what this process wrote after the share was made."""
    import torch.multiprocessing as mp

    tensor = torch.arange(16, dtype=torch.float32, device="cuda").reshape(4, 4)
    storages, views = group_by_storage({"t": tensor})
    descriptor = {"views": views, "storages": share_storages(storages)}
    tensor.add_(1)  # after the share: the receiver maps memory, not a copy
    torch.cuda.synchronize()
    with mp.get_context("spawn").Pool(1) as pool:
        total = pool.apply_async(_sum_in_other_process, (descriptor,)).get(timeout=120)
    assert total == float(tensor.sum())


def _sum_in_other_process(descriptor: dict[str, Any]) -> float:
    from lorafaas.wire.cuda_ipc import import_tensors

    return float(import_tensors(descriptor)["t"].sum())
