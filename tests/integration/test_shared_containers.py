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
from lorafaas.invoker.containers import ContainerState, is_namespace_key
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

    # The action's instances show the namespace container its requests go to.
    response = await platform.request("GET", "/api/v1/namespaces/_/actions/b?code=false")
    (instance,) = (await response.json())["instances"]
    assert instance["kind"] == "namespace" and instance["adapterLoaded"] is True, instance
    assert instance["container"] == containers[ours].info.name

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


async def test_batch_size_counts_every_function_s_requests_in_its_steps(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    """A request of one function joins a long request of another in the namespace
    container: each record's batchSize is 2, the most requests of one step it was in
    (the long one was sent alone, so the requests sent with it would say 1); a request
    alone afterwards says 1."""
    for name, adapter in (("long", "pirate"), ("short", "shout")):
        await create_action(platform, name, demo_models.adapters[adapter], make_zip,
                            limits={"timeout": 300_000})
    pool = platform.app[local_invoker_key].pool
    key = f"namespace:guest/{pool.default_backbone}"

    async def steps() -> int | None:
        container = next((c for c in pool.containers() if c.function_key == key), None)
        if container is None or container.state is not ContainerState.BUSY:
            return None
        health = await runtime_health(socket_of(container))
        return int(health["steps"]) if health.get("initialized") else None

    before = await steps() or 0
    long = asyncio.create_task(invoke(platform, "long", **{**params("a"), "max_tokens": 400}))
    while (now := await steps()) is None or now <= before:  # until the long one decodes
        assert not long.done(), await long
        await asyncio.sleep(0.02)
    short_status, short_record, _ = await invoke(platform, "short", **params("b"))
    long_status, long_record, _ = await long
    assert short_status == long_status == 200, (short_record, long_record)
    assert annotation(long_record, "container") == annotation(short_record, "container") \
        == "namespace"
    assert long_record["response"]["result"]["usage"]["completion_tokens"] == 400
    assert annotation(long_record, "batchSize") == 2
    assert annotation(short_record, "batchSize") == 2
    status, alone, _ = await invoke(platform, "short", **params("b"))
    assert status == 200 and annotation(alone, "batchSize") == 1, alone


async def test_the_preloading_plan_loads_an_adapter_into_the_namespace_container(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    """A function placed in its namespace's container, whose container has gone, is held
    by the spare share: the maintenance starts the namespace container pre-loaded with
    its adapter, and its next request says `preloaded`."""
    await create_action(platform, "pre", demo_models.adapters["pirate"], make_zip,
                        limits={"timeout": 300_000})
    status, record, _ = await invoke(platform, "pre", **params("a"))
    assert status == 200 and annotation(record, "container") == "namespace", record
    local = platform.app[local_invoker_key]
    pool, sharing = local.pool, local.runner.sharing
    key = f"namespace:guest/{pool.default_backbone}"
    assert await pool.remove_idle(lambda c: c.function_key == key, "test: keep-alive ended")
    local.maintenance.spare_share = 0.9  # spare memory holds the functions requested lately

    def holding() -> bool:
        return any(c.function_key == key and c.state is ContainerState.PRELOADED
                   and sharing.holds(c) for c in pool.containers())

    for _ in range(3000):  # the maintenance ticks every second; a busy machine starts slowly
        if holding():
            break
        await asyncio.sleep(0.1)
    assert holding(), [(c.function_key, c.state) for c in pool.containers()]
    status, record, _ = await invoke(platform, "pre", **params("a"))
    assert status == 200, record
    assert annotation(record, "container") == "namespace"
    assert annotation(record, "startKind") == "preloaded", record["annotations"]
    status, record, _ = await invoke(platform, "pre", **params("a"))
    assert status == 200 and annotation(record, "startKind") == "warm", record
