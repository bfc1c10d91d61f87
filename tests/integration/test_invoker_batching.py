"""The invoker's batching on the real platform (SQLite, then PostgreSQL) and Docker.

Concurrent invocations of one function are served as one batch, each with the result it
gets alone; a batch in a warm container is billed the CPU time the Docker engine counted for
the container over it (the runtime's work between requests aside), split by tokens, and
`/metrics` shows the batch, the requests served and the SLO misses.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from lorafaas.controller.app import local_invoker_key
from lorafaas.settings import replace
from tests.integration.test_end_to_end import annotation, create_action
from tests.integration.test_usage_reports import engine_cpu_s, runtime_health, socket_of
from tests.unit.test_invoker_metrics import parse, value

# About functions' own containers: their platform shares none (LORAFAAS_SHARED_CONTAINERS=off).
pytestmark = [pytest.mark.docker, pytest.mark.unshared]
PROMPTS = ["Tell me a story about a brave dragon", "Can you explain how a rainbow forms?",
           "hi", "Name three rivers."]
MAX_TOKENS = [24, 3, 16, 8]


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Batches of up to 4: the four concurrent invocations fill exactly one."""
    return replace(settings, batching="fill-or-expire", max_batch_size=4)


async def invoke(platform, name: str, **params: Any):  # type: ignore[no-untyped-def]
    """Blocking invoke that waits up to 5 minutes (a busy machine starts containers slowly)."""
    response = await platform.request("POST", f"/api/v1/namespaces/_/actions/{name}",
                                      params={"blocking": "true", "timeout": "300000"},
                                      json=params)
    return response.status, await response.json(), response.headers


def params(index: int) -> dict[str, Any]:
    """Greedy parameters of the index-th request."""
    return {"prompt": PROMPTS[index], "max_tokens": MAX_TOKENS[index], "temperature": 0,
            "ignore_eos": True, "return_token_ids": True}


async def test_concurrent_invocations_share_one_batch(platform, demo_models, make_zip,  # type: ignore[no-untyped-def]
                                                     docker_client):
    adapter = demo_models.adapters["pirate"]
    # `solo` cannot meet an SLO of 1 ms at any size: its batches hold one request.
    await create_action(platform, "solo", adapter, make_zip,
                        limits={"slo_ttft_ms": 1, "timeout": 300_000})
    # `batched` has a long SLO: its batch closes when four requests fill it.
    await create_action(platform, "batched", adapter, make_zip,
                        limits={"slo_ttft_ms": 120_000, "timeout": 300_000})
    alone = []
    for index in range(len(PROMPTS)):
        status, record, _ = await invoke(platform, "solo", **params(index))
        assert status == 200, record
        assert annotation(record, "batchSize") == 1
        alone.append(record["response"]["result"])

    outcomes = await asyncio.gather(*(invoke(platform, "batched", **params(index))
                                      for index in range(len(PROMPTS))))
    records = []
    for index, (status, record, _) in enumerate(outcomes):
        assert status == 200, record
        assert annotation(record, "batchSize") == len(PROMPTS)
        result = record["response"]["result"]
        assert result["token_ids"] == alone[index]["token_ids"]
        assert len(result["token_ids"]) == MAX_TOKENS[index]
        # What the caller waited for its first token includes the queue and the cold start.
        assert annotation(record, "ttft") >= annotation(record, "waitTime")
        records.append(record)
    # The short request was answered when it ended, not with the longest.
    assert records[1]["end"] <= records[0]["end"]

    await _check_metrics(platform)  # before the second batch, which _check_usage runs
    await _check_usage(platform, records, docker_client)


async def _check_usage(platform, records: list[dict[str, Any]], docker_client) -> None:  # type: ignore[no-untyped-def]
    """A batch in the warm container is billed the CPU time the container used over it, the
    longest request the most; its memory on the same shares."""
    (container,) = [c for c in platform.app[local_invoker_key].pool.containers()
                    if c.function_path == "guest/batched"]
    health = await runtime_health(socket_of(container))
    assert health["generations"] == len(PROMPTS)
    before = engine_cpu_s(docker_client, container.info.id)
    outcomes = await asyncio.gather(*(invoke(platform, "batched", **params(index))
                                      for index in range(len(PROMPTS))))
    used = engine_cpu_s(docker_client, container.info.id) - before
    assert all(status == 200 and annotation(record, "batchSize") == len(PROMPTS)
               for status, record, _ in outcomes), outcomes
    response = await platform.request("GET", "/api/v1/namespaces/_/usage")
    body = await response.json()
    assert response.status == 200, body
    lines = {line["activationId"]: line for line in body["activations"]}
    assert {r["activationId"] for r in records} <= set(lines)
    costs = [annotation(record, "cost") for _, record, _ in outcomes]
    assert all(cost["measure"] == "cgroup-cpu" for cost in costs)
    billed = math.fsum(cost["cpuSeconds"] for cost in costs)
    print(f"batch of {len(PROMPTS)}: billed {billed:.4f} CPU-s, the engine counted "
          f"{used:.4f} CPU-s, difference {100 * (billed - used) / used:+.2f}%")
    assert 0.9 * used <= billed <= used * 1.001
    # 24 tokens and the longest prompt cost more than 3 tokens of a short one.
    assert costs[0]["cpuSeconds"] > costs[1]["cpuSeconds"] > 0
    # Memory is billed on the same shares: the batch pays the container's busy time once.
    memory_gb = annotation(records[0], "limits")["memory"] / 1024
    batch = [lines[record["activationId"]] for _, record, _ in outcomes]
    busy_s = math.fsum(line["gbSeconds"] for line in batch) / memory_gb
    assert busy_s == pytest.approx(billed / platform.settings.container_torch_threads,
                                   rel=1e-3)


async def _check_metrics(platform) -> None:  # type: ignore[no-untyped-def]
    """`/metrics` needs an admin key and shows the batch and the SLO counts."""
    anonymous = await platform.client.get("/metrics")
    assert anonymous.status == 401
    response = await platform.request("GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    types, samples = parse(await response.text())
    assert types["lorafaas_batch_size"] == "histogram"
    assert value(samples, "lorafaas_batch_size_count", function="guest/batched") == 1
    assert value(samples, "lorafaas_batch_size_sum", function="guest/batched") == len(PROMPTS)
    assert value(samples, "lorafaas_batch_size_count", function="guest/solo") == len(PROMPTS)
    assert value(samples, "lorafaas_requests_served_total", function="guest/batched") == 4
    assert value(samples, "lorafaas_slo_misses_total", function="guest/batched") == 0
    assert value(samples, "lorafaas_slo_attainment", function="guest/batched") == 1
    # An SLO of 1 ms is missed by every request, which is still served.
    assert value(samples, "lorafaas_requests_served_total", function="guest/solo") == 4
    assert value(samples, "lorafaas_slo_misses_total", function="guest/solo") == 4
    assert value(samples, "lorafaas_queue_length", function="guest/batched") == 0
    assert value(samples, "lorafaas_batches_running") == 0
    assert value(samples, "lorafaas_containers", state="warm") == 2
