"""Namespace containers in the platform (`LORAFAAS_SHARED_CONTAINERS=namespace`), on the
real registry, backbone server and Docker.

Functions of one namespace invoked together are served by their namespace's one
container, decoding together, with the tokens their own containers give them (the `off`
path); another namespace's function runs in its own namespace's container, never in
theirs; and a function whose rate rises moves to its own container and back when it
falls, no request lost or failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from lorafaas.controller.app import local_invoker_key
from lorafaas.invoker.containers import is_namespace_key
from lorafaas.invoker.namespace_containers import NamespaceFolders
from lorafaas.settings import replace
from tests.integration.test_end_to_end import action_body, annotation, create_action
from tests.integration.test_invoker_batching import invoke
from tests.integration.test_usage_reports import runtime_health, socket_of
from tests.unit.test_invoker_metrics import parse, value

pytestmark = pytest.mark.docker
PROMPTS = {"a": "Tell me about the sea", "b": "Why is the sky blue?",
           "c": "Describe a busy market in the morning"}


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Namespace containers; thresholds no test traffic reaches (every function shares)."""
    return replace(settings, shared_containers="namespace", namespace_memory_mb=2048,
                   shared_own_at=1000.0, shared_share_at=999.0,
                   container_start_timeout_s=300)  # a busy machine starts them slowly


def params(name: str) -> dict[str, Any]:
    """Greedy parameters returning the token ids."""
    return {"prompt": PROMPTS[name], "max_tokens": 10, "temperature": 0, "ignore_eos": True,
            "return_token_ids": True}


async def test_a_namespace_s_functions_share_its_container(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    from lorafaas.controller.appkeys import sessions_key
    from lorafaas.registry.namespaces import create_namespace

    adapters = {"a": "pirate", "b": "shout", "c": "pirate"}
    for name, adapter in adapters.items():
        await create_action(platform, name, demo_models.adapters[adapter], make_zip,
                            limits={"timeout": 300_000})
    async with platform.app[sessions_key]() as session, session.begin():
        alice = await create_namespace(session, "alice")
    alice_auth = {"Authorization": aiohttp.encode_basic_auth(*alice.split(":", 1))}
    response = await platform.request(
        "PUT", "/api/v1/namespaces/_/actions/d", headers=alice_auth,
        json=action_body(make_zip(demo_models.adapters["pirate"]), limits={"timeout": 300_000}))
    assert response.status == 200, await response.json()

    async def alice_invoke() -> tuple[int, dict[str, Any]]:
        answer = await platform.request(
            "POST", "/api/v1/namespaces/_/actions/d", headers=alice_auth,
            params={"blocking": "true", "timeout": "300000"}, json=params("a"))
        return answer.status, await answer.json()

    guest = [invoke(platform, name, **params(name)) for name in adapters]
    *shared, (alice_status, alice_record) = await asyncio.gather(*guest, alice_invoke())
    for status, record, _ in shared:
        assert status == 200, (record, record.get("logs"))
        assert annotation(record, "container") == "namespace"
    assert alice_status == 200, alice_record
    assert annotation(alice_record, "container") == "namespace"
    kinds = sorted(annotation(record, "startKind") for _, record, _ in shared)
    # The first request starts the container (cold); a function whose request arrives
    # while it starts waits for that start (cold too), one arriving after loads its adapter.
    assert kinds[-1] == "cold" and set(kinds) <= {"adapter", "cold"}, kinds
    assert max(annotation(record, "batchSize") for _, record, _ in shared) >= 2

    pool = platform.app[local_invoker_key].pool
    containers = {c.function_key: c for c in pool.containers()}
    ours, theirs = (f"namespace:{ns}/{pool.default_backbone}" for ns in ("guest", "alice"))
    assert set(containers) == {ours, theirs}
    health = await runtime_health(socket_of(containers[ours]))
    assert health["generations"] == 3
    assert len(health["adapters"]) == 3  # a, b and c, each in its own slot
    assert health["maxFunctionsPerStep"] >= 2, health  # they decoded together
    folders = containers[ours].folders
    assert isinstance(folders, NamespaceFolders)
    guest_slots = {path.name for path in folders.adapters.iterdir()}
    assert all(slot.startswith("guest_") for slot in guest_slots), guest_slots
    alice_health = await runtime_health(socket_of(containers[theirs]))
    assert alice_health["generations"] == 1 and len(alice_health["adapters"]) == 1

    # /metrics shows the shared decode's composition.
    sharing = platform.app[local_invoker_key].runner.sharing
    await sharing.refresh_steps()
    response = await platform.request("GET", "/metrics")
    assert response.status == 200
    _, samples = parse(await response.text())
    label = ours.removeprefix("namespace:")
    assert value(samples, "lorafaas_namespace_steps_total", container=label) == health["steps"]
    assert value(samples, "lorafaas_namespace_step_requests_total", container=label) == \
        health["stepRows"]
    assert value(samples, "lorafaas_namespace_max_functions_per_step", container=label) >= 2

    # A warm request whose adapter is loaded: `warm`.
    status, record, _ = await invoke(platform, "b", **params("b"))
    assert status == 200 and annotation(record, "startKind") == "warm", record

    # Each pays its share of the container's CPU by the tokens of its rows in each step.
    costs = [annotation(record, "cost") for _, record, _ in shared]
    assert all(c["measure"] == "cgroup-cpu" and c["cpuSeconds"] > 0 for c in costs), costs

    # The `off` path (each function's own containers) gives each the same tokens.
    platform.app[local_invoker_key].runner.dispatcher.route = None
    own = await asyncio.gather(*(invoke(platform, name, **params(name)) for name in adapters))
    for (_, record, _), (status, alone, _), name in zip(shared, own, adapters, strict=True):
        assert status == 200, alone
        assert annotation(alone, "container") == "function"
        assert alone["response"]["result"]["token_ids"] == \
            record["response"]["result"]["token_ids"], name
    assert sum(not is_namespace_key(c.function_key) for c in pool.containers()) == 3
