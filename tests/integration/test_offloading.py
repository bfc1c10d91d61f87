"""Offloading against real containers: the runtime moves an adapter to host memory and back
with the same output, and a pool with a small accelerator budget keeps two alternating
functions correct by offloading the idle one."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from lorafaas.invoker.offloading import MB, AcceleratorMemory, Offloader, OffloadPolicy
from lorafaas.invoker.pool import ContainerPool, FunctionRef
from lorafaas.invoker.preloading import Tier
from lorafaas.invoker.runtime_client import RuntimeClient
from tests.integration.test_pool import function, make_pool

pytestmark = pytest.mark.docker
PAYLOAD = {"value": {"prompt": "Tell me about the weather today", "max_tokens": 12,
                     "ignore_eos": True, "return_token_ids": True}, "max_tokens_limit": 64}
# The demo adapters hold about 2.4 MB each: the budget holds one, not two.
BUDGET = 4 * MB


async def greedy(client: RuntimeClient) -> tuple[list[int], dict[str, float]]:
    """The token ids and timings of the test prompt."""
    outcome = await client.run(PAYLOAD)
    return list(outcome.result["token_ids"]), outcome.timings


async def invoke(pool: ContainerPool, target: FunctionRef) -> list[int]:
    """One activation through the pool: acquire, run, release."""
    lease = await pool.acquire(target)
    try:
        tokens, _ = await greedy(lease.container.client)
    finally:
        await pool.release(lease.container)
    return tokens


async def test_offloaded_adapter_comes_back_with_the_same_output(  # type: ignore[no-untyped-def]
        backbone, runtime_image, short_dir: Path, demo_models) -> None:
    pool = make_pool(backbone, runtime_image, short_dir, f"offl{uuid.uuid4().hex[:8]}")
    try:
        lease = await pool.acquire(function(demo_models, "pirate"))
        client = lease.container.client
        before, _ = await greedy(client)
        health = await client.health()
        assert health["tier"] == "accelerator"
        assert health["acceleratorBytes"] == health["artifactBytes"] > 2 * MB

        offloaded = await client.move(to_host=True)
        assert offloaded.moved == "host" and offloaded.bytes == health["artifactBytes"]
        assert offloaded.ms > 0
        health = await client.health()
        assert health["tier"] == "host" and health["acceleratorBytes"] == 0

        # A run on the offloaded function restores first, and says so in its timings.
        after, timings = await greedy(client)
        assert after == before
        assert timings["restore"] > 0 and timings["ttft"] >= timings["restore"]
        assert (await client.health())["tier"] == "accelerator"

        assert (await client.move(to_host=True)).bytes == offloaded.bytes
        restored = await client.move(to_host=False)
        assert restored.moved == "accelerator" and restored.bytes == offloaded.bytes
        assert (await client.move(to_host=False)).bytes == 0, "already there: nothing moves"
        again, timings = await greedy(client)
        assert again == before and "restore" not in timings
    finally:
        await pool.shutdown()


@pytest.mark.parametrize("policy", [OffloadPolicy.VALUE_DENSITY, OffloadPolicy.LRU])
async def test_two_functions_alternating_within_a_small_budget(  # type: ignore[no-untyped-def]
        backbone, runtime_image, short_dir: Path, demo_models, policy: OffloadPolicy) -> None:
    pool = make_pool(backbone, runtime_image, short_dir, f"offl{uuid.uuid4().hex[:8]}")
    offloader = pool.offloader = Offloader(policy, AcceleratorMemory(BUDGET))
    pirate, shout = function(demo_models, "pirate"), function(demo_models, "shout")
    try:
        outputs: dict[str, list[list[int]]] = {"pirate": [], "shout": []}
        for _ in range(3):
            for name, target in (("pirate", pirate), ("shout", shout)):
                outputs[name].append(await invoke(pool, target))
                assert offloader.memory.used() <= BUDGET
        tiers = {c.function_path: offloader.tier_of(c) for c in pool.containers()}
        healths = {c.function_path: await c.client.health() for c in pool.containers()}
    finally:
        await pool.shutdown()

    # The first run of each was before it was ever offloaded: the reference.
    for name in ("pirate", "shout"):
        assert outputs[name] == [outputs[name][0]] * 3, f"{name} changed after offloading"
    assert outputs["pirate"][0] != outputs["shout"][0], "each function runs its own adapter"
    # Shout ran last: pirate waits in host memory, and the runtimes agree with the ledger.
    assert tiers == {"guest/pirate": Tier.HOST, "guest/shout": Tier.ACCELERATOR}
    assert healths["guest/pirate"]["tier"] == "host"
    assert healths["guest/shout"]["tier"] == "accelerator"
    counters = offloader.counters
    # Each switch after the first run of both offloads one adapter and restores the other.
    assert counters.offloads == 5 and counters.restores == 4
    assert counters.bytes_offloaded == 5 * healths["guest/shout"]["artifactBytes"]
    assert counters.offload_ms > 0 and counters.restore_ms > 0


async def test_without_offloading_a_request_waits_for_memory(  # type: ignore[no-untyped-def]
        backbone, runtime_image, short_dir: Path, demo_models) -> None:
    pool = make_pool(backbone, runtime_image, short_dir, f"offl{uuid.uuid4().hex[:8]}")
    offloader = pool.offloader = Offloader(OffloadPolicy.NONE, AcceleratorMemory(BUDGET))
    pirate, shout = function(demo_models, "pirate"), function(demo_models, "shout")
    try:
        await invoke(pool, pirate)
        waiting: asyncio.Task[Any] = asyncio.create_task(invoke(pool, shout))
        for _ in range(600):  # the cold start of shout, then its wait
            if offloader.counters.waits:
                break
            await asyncio.sleep(0.1)
        assert offloader.counters.waits == 1 and not waiting.done()
        await pool.remove_function("guest/pirate")
        tokens = await asyncio.wait_for(waiting, 60)
    finally:
        await pool.shutdown()
    assert tokens and offloader.counters.offloads == 1  # shout, loaded beyond the budget
    assert offloader.counters.restores == 1 and offloader.counters.wait_ms > 0
