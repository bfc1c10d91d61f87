"""Continuous batching on the real platform (SQLite, then PostgreSQL) and Docker.

A short request that arrives while a long one decodes joins it in the same container and
returns first, each with the tokens it gets alone; the two are billed the CPU time the
Docker engine counted for their container while they ran (the runtimes' work between
requests aside).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import openai
import pytest

from lorafaas.controller.app import local_invoker_key
from lorafaas.settings import replace
from tests.integration.test_end_to_end import annotation, create_action
from tests.integration.test_invoker_batching import invoke
from tests.integration.test_usage_reports import engine_cpu_s, runtime_health, socket_of

pytestmark = pytest.mark.docker
# ~15 ms a token on 2 CPU cores: the long request decodes for about 3 s.
LONG = {"prompt": "Tell me a story about a brave dragon", "max_tokens": 200}
SHORT = {"prompt": "Can you explain how a rainbow forms?", "max_tokens": 4}


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Continuous batching, up to 4 requests at once in a container."""
    return replace(settings, batching="continuous", max_batch_size=4)


def params(base: dict[str, Any]) -> dict[str, Any]:
    """Greedy parameters returning the token ids."""
    return {**base, "temperature": 0, "ignore_eos": True, "return_token_ids": True}


async def test_a_short_request_joins_a_long_one_and_returns_first(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip, docker_client) -> None:
    await create_action(platform, "chat", demo_models.adapters["pirate"], make_zip,
                        limits={"timeout": 300_000})
    alone = {}
    for name, base in (("short", SHORT), ("long", LONG)):  # the first starts the container
        status, record, _ = await invoke(platform, "chat", **params(base))
        assert status == 200, record
        assert annotation(record, "batchSize") == 1
        alone[name] = record["response"]["result"]["token_ids"]

    (container,) = [c.info.id for c in platform.app[local_invoker_key].pool.containers()]
    before = engine_cpu_s(docker_client, container)
    long = asyncio.create_task(invoke(platform, "chat", **params(LONG)))
    await asyncio.sleep(1.0)  # the long request decodes by now
    short_status, short_record, _ = await invoke(platform, "chat", **params(SHORT))
    assert not long.done(), "the short request did not wait for the long one"
    long_status, long_record, _ = await long
    used = engine_cpu_s(docker_client, container) - before
    assert short_status == 200 and long_status == 200, (short_record, long_record)
    assert short_record["end"] < long_record["end"]
    assert short_record["response"]["result"]["token_ids"] == alone["short"]
    assert long_record["response"]["result"]["token_ids"] == alone["long"]
    assert annotation(short_record, "batchSize") == 2
    assert annotation(short_record, "startKind") == "warm"
    # Its wait for the first token is a prefill next to the running decode, not the rest
    # of the long generation.
    assert annotation(short_record, "ttft") < 1000

    await _check_usage(platform, 4, [short_record, long_record], used)


async def test_a_streamed_request_joins_a_running_decode(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    await create_action(platform, "chat", demo_models.adapters["pirate"], make_zip,
                        limits={"timeout": 300_000})
    greedy = {"prompt": SHORT["prompt"], "max_tokens": 12, "temperature": 0}
    status, record, _ = await invoke(platform, "chat", **greedy)  # alone; starts the container
    assert status == 200, record
    expected = record["response"]["result"]["text"]

    long = asyncio.create_task(invoke(platform, "chat", **params(LONG)))
    await asyncio.sleep(1.0)
    base_url = str(platform.client.make_url("/v1/"))
    async with openai.AsyncOpenAI(base_url=base_url, api_key=platform.credential,
                                  max_retries=0) as client:
        stream = await client.completions.create(model="chat", stream=True, **greedy)
        pieces = [choice.text async for chunk in stream for choice in chunk.choices]
    assert not long.done(), "the streamed request did not wait for the long one"
    assert "".join(pieces) == expected
    assert len([p for p in pieces if p]) > 1, "the text came in one piece, not streamed"
    long_status, long_record, _ = await long
    assert long_status == 200, long_record


async def _check_usage(platform, count: int, session: list[dict[str, Any]],  # type: ignore[no-untyped-def]
                       used: float) -> None:
    """The session's requests are billed the CPU time their container used meanwhile."""
    response = await platform.request("GET", "/api/v1/namespaces/_/usage")
    body = await response.json()
    assert response.status == 200, body
    assert len(body["activations"]) == count
    # Its one container (its namespace's, by default; its own with sharing off).
    (container,) = platform.app[local_invoker_key].pool.containers()
    health = await runtime_health(socket_of(container))
    assert health["generations"] == count
    costs = [annotation(record, "cost") for record in session]
    assert all(cost["measure"] == "cgroup-cpu" for cost in costs)
    billed = math.fsum(cost["cpuSeconds"] for cost in costs)
    print(f"a session of 2: billed {billed:.4f} CPU-s, the engine counted {used:.4f} CPU-s")
    assert 0.9 * used <= billed <= used * 1.001
    # The long request, in the session from its start to its end, pays more.
    assert costs[1]["cpuSeconds"] > costs[0]["cpuSeconds"] > 0
