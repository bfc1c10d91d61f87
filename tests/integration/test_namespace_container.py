"""A real namespace container (Docker, the runtime image, the backbone server): eight
functions of one namespace invoked concurrently, and arriving while others decode, share
decode steps and each gets peft's greedy tokens alone; the container holds only its
namespace's adapters, another namespace's function cannot run there, and a bad adapter
fails only its own requests; an adapter pre-loaded serves its first request as such."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lorafaas.invoker.attach_channels import AttachChannels
from lorafaas.invoker.backend import ContainerInfo
from lorafaas.invoker.docker_backend import DockerBackend
from lorafaas.invoker.namespace_containers import NamespaceFolders, namespace_spec
from lorafaas.invoker.pool import BackboneMounts
from lorafaas.invoker.runtime_client import RunOutcome, RuntimeClient, RuntimeUnavailable
from tests.namespace_cases import PROMPTS, TOKENS, make_adapters, peft_tokens

pytestmark = pytest.mark.docker


class Served:
    """One namespace container for the module: its folders, client and slots."""

    def __init__(self, folders: NamespaceFolders, info: ContainerInfo,
                 client: RuntimeClient, slots: list[str], expected: list[list[int]],
                 other: Path) -> None:
        self.folders = folders
        self.info = info
        self.client = client
        self.slots = slots
        self.expected = expected
        self.other = other  # bob's adapter, on the host only

    def payload(self, index: int, **extra: Any) -> dict[str, Any]:
        """Function `index`'s request."""
        return {"function": self.slots[index], "activation_id": uuid.uuid4().hex,
                "max_tokens_limit": 64,
                "value": {"prompt": PROMPTS[index], "max_tokens": TOKENS[index],
                          "ignore_eos": True, "return_token_ids": True}, **extra}


@pytest.fixture(scope="module")
def adapters(demo_models: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[list[Path], list[list[int]]]:
    """The eight adapters and peft's tokens for each request alone."""
    made = make_adapters(demo_models.backbone_dir, tmp_path_factory.mktemp("made"))
    return made, peft_tokens(demo_models.backbone_dir, made)


@pytest.fixture
async def served(backbone: BackboneMounts, runtime_image: str, short_dir: Path,
                 adapters: tuple[list[Path], list[list[int]]]) -> AsyncIterator[Served]:
    made, expected = adapters
    folders = NamespaceFolders(short_dir / "ns", "alice")
    folders.create()
    slots = [folders.add("alice", f"alice/f{i}@0.0.1", path) for i, path in enumerate(made)]
    with pytest.raises(PermissionError, match="bob"):
        folders.add("bob", "bob/f0@0.0.1", made[0])
    backend = DockerBackend()
    channels = AttachChannels(backbone.control_socket)
    await channels.open(folders.channel, folders.attach_socket)  # its own attach channel
    name = f"lorafaas-nstest-{uuid.uuid4().hex[:8]}"
    spec = namespace_spec(folders, backbone, name=name, image=runtime_image,
                          invoker_id=f"nstest{uuid.uuid4().hex[:8]}", memory_mb=2048,
                          pids_limit=256, adapter_budget_mb=64, torch_threads=1)
    info = await asyncio.to_thread(backend.start, spec)
    client = RuntimeClient(folders.socket)
    try:
        await client.wait_ready(120, lambda: asyncio.to_thread(backend.is_running, info.id))
        init = await client.init_measured({})
        assert {"backbone", "tokenizer", "kernels"} <= set(init.breakdown)
        yield Served(folders, info, client, slots, expected, made[0])
    finally:
        await client.close()
        await asyncio.to_thread(backend.remove, info.id)
        await channels.close(folders.channel)
        folders.remove()


async def test_eight_functions_share_steps_and_each_equals_peft(served: Served) -> None:
    client = served.client
    together = await asyncio.gather(*(client.run(served.payload(i)) for i in range(8)))
    health = await client.health()
    # Staggered: four run, streamed; the other four are sent once the first has tokens.
    first_delta = asyncio.Event()

    async def on_delta(_: str) -> None:
        first_delta.set()

    early = [asyncio.ensure_future(client.run_stream(served.payload(i), on_delta))
             for i in (0, 2, 4, 6)]
    await first_delta.wait()
    late = [asyncio.ensure_future(client.run(served.payload(i))) for i in (1, 3, 5, 7)]
    staggered: dict[int, RunOutcome] = dict(zip((0, 2, 4, 6), await asyncio.gather(*early),
                                                strict=True))
    staggered |= dict(zip((1, 3, 5, 7), await asyncio.gather(*late), strict=True))
    after = await client.health()

    assert [o.result["token_ids"] for o in together] == served.expected
    assert [staggered[i].result["token_ids"] for i in range(8)] == served.expected
    assert {o.timings["container"] for o in together} == {"namespace"}
    assert sum(not o.timings["adapterLoaded"] for o in together) == 8
    assert all(staggered[i].timings["adapterLoaded"] for i in range(8))
    assert health["maxFunctionsPerStep"] >= 2, "functions decoded in shared steps"
    assert after["steps"] > health["steps"]
    assert sorted(after["adapters"]) == sorted(served.slots)


async def test_only_its_namespaces_adapters_are_there(served: Served,
                                                      docker_client: Any) -> None:
    container = docker_client.containers.get(served.info.id)
    listing = container.exec_run(["ls", "-a", "/adapters"]).output.decode().split()
    assert sorted(set(listing) - {".", ".."}) == sorted(served.slots)
    written = container.exec_run(["sh", "-c", "touch /adapters/x"])
    assert written.exit_code != 0, "the adapters are mounted read-only"
    # bob's function is not mounted: naming it (or a path out) runs nothing.
    for slot in ("bob-f0", "../made/f0", str(served.other)):
        outcome = await served.client.run({**served.payload(0), "function": slot})
        assert "cannot be served" in outcome.result["error"]
        assert "token_ids" not in outcome.result


async def test_a_bad_adapter_fails_only_its_own_requests(served: Served) -> None:
    broken = served.folders.adapters / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(
        (served.folders.adapters / served.slots[0] / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    outcomes = await asyncio.gather(
        served.client.run({**served.payload(0), "function": "broken"}),
        *(served.client.run(served.payload(i)) for i in (1, 2)))
    assert "broken" in outcomes[0].result["error"]
    assert [o.result["token_ids"] for o in outcomes[1:]] == served.expected[1:3]
    health = await served.client.health()
    assert health["ok"] and "broken" not in health["adapters"]


async def test_a_preloaded_adapter_serves_its_first_request_as_preloaded(
        served: Served) -> None:
    """`POST /load` (the pre-loading plan's) loads a function's adapter ahead: its first
    request finds it loaded and says it was pre-loaded, the next one does not; a slot
    that is not mounted is refused and nothing is loaded for it."""
    slot = await asyncio.to_thread(served.folders.add, "alice", "alice/pre@0.0.1",
                                   served.other)
    answer = await served.client.load_adapter(slot)
    assert answer["loaded"] is True and answer["bytes"] > 0 and answer["adapterLoad"] > 0
    assert slot in (await served.client.health())["adapters"]
    again = await served.client.load_adapter(slot)  # loaded already: nothing to load
    assert again["loaded"] is True and again["adapterLoad"] == 0
    first = await served.client.run({**served.payload(0), "function": slot})
    second = await served.client.run({**served.payload(0), "function": slot})
    assert first.result["token_ids"] == second.result["token_ids"] == served.expected[0]
    assert first.timings["adapterLoaded"] is True and first.timings["adapterPreloaded"] is True
    assert second.timings["adapterLoaded"] is True and "adapterPreloaded" not in second.timings
    refused = await served.client.load_adapter("bob-f0")
    assert refused["loaded"] is False and "no adapter is mounted" in refused["error"]
    with pytest.raises(RuntimeUnavailable, match="'function'"):
        await served.client._post("/load", {})
    assert "bob-f0" not in (await served.client.health())["adapters"]
