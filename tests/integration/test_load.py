"""A bounded load test on loopback: 1,000 invocations from 50 concurrent clients, one function.

Every invocation gets a result or a 429; every accepted one has exactly one activation
record; nothing hangs (the whole run has a deadline). The figures are printed.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from lorafaas.controller.appkeys import invocations_key, sessions_key
from lorafaas.registry.models import Activation
from lorafaas.settings import replace

pytestmark = pytest.mark.docker
INVOCATIONS = 1000
CLIENTS = 50


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Throttles the load crosses: 30 in flight of the 50 clients."""
    return replace(settings, invocations_per_minute=100_000, concurrent_invocations=30,
                   max_instances=2)


async def test_thousand_invocations_from_fifty_clients(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    code = base64.b64encode(make_zip(demo_models.adapters["shout"])).decode()
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/load",
                                      json={"exec": {"kind": "lora", "binary": True,
                                                     "code": code}})
    assert response.status == 200
    warm_up = await platform.request("POST", "/api/v1/namespaces/_/actions/load",
                                     params={"blocking": "true"}, json={"prompt": "hi"})
    assert warm_up.status == 200
    statuses: Counter[int] = Counter()
    accepted: list[str] = []
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for number in range(INVOCATIONS):
        queue.put_nowait(number)

    async def client() -> None:
        while not queue.empty():
            queue.get_nowait()
            started = time.monotonic()
            response = await platform.request("POST", "/api/v1/namespaces/_/actions/load",
                                              params={"blocking": "true"},
                                              json={"prompt": "hi", "max_tokens": 1})
            body = await response.json()
            statuses[response.status] += 1
            if response.status == 200:
                accepted.append(body["activationId"])
                latencies.append(time.monotonic() - started)
            elif response.status == 429:
                await asyncio.sleep(0.1)  # a polite client backs off before its next call

    began = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CLIENTS))), timeout=900)
    elapsed = time.monotonic() - began
    # Blocking callers are answered before their records commit: read once they have.
    await platform.app[invocations_key].settled(None)
    async with platform.app[sessions_key]() as session:
        records = await session.scalar(select(func.count()).select_from(Activation))
        ids = list(await session.scalars(select(Activation.activation_id)))
    ids.remove((await warm_up.json())["activationId"])
    print(f"\n{INVOCATIONS} invocations from {CLIENTS} clients in {elapsed:.1f}s: "
          f"statuses {dict(statuses)}; {len(accepted) / elapsed:.1f} results/s; latency of "
          f"accepted p50 {statistics.median(latencies) * 1000:.0f} ms, max "
          f"{max(latencies) * 1000:.0f} ms; {records - 1} activation records")
    assert set(statuses) <= {200, 429} and sum(statuses.values()) == INVOCATIONS
    assert statuses[200] > 0
    assert sorted(ids) == sorted(accepted), "each accepted invocation has exactly one record"
