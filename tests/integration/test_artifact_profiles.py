"""Artifact profiles measured by real cold starts, kept in the registry, shown by the API and
read back by a restarted platform (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from lorafaas.controller.app import local_invoker_key
from lorafaas.controller.appkeys import invocations_key, sessions_key
from lorafaas.invoker.artifact_loads import ARTIFACTS, ewma
from lorafaas.registry.models import Action
from lorafaas.registry.profiles import function_profiles
from tests.conftest import PlatformClient
from tests.integration.test_end_to_end import annotation, create_action

# About functions' own containers: their platform shares none (LORAFAAS_SHARED_CONTAINERS=off).
pytestmark = [pytest.mark.docker, pytest.mark.unshared]

MB = 1024 * 1024
# Cold starts on a loaded 2-core machine can take over a minute: wait for them.
PATIENCE_MS = 300_000


async def cold_invocation(platform: Any, name: str) -> dict[str, float]:
    """Invoke once from a cold start; the init breakdown it recorded."""
    response = await platform.request("POST", f"/api/v1/namespaces/_/actions/{name}",
                                      params={"blocking": "true", "timeout": str(PATIENCE_MS)},
                                      json={"prompt": "Ahoy", "max_tokens": 4})
    record = await response.json()
    assert response.status == 200, record
    assert annotation(record, "startKind") == "cold"
    # Answered before its record commits: the profiles commit with it.
    await platform.app[invocations_key].settled(platform.settings.guest_namespace)
    return dict(annotation(record, "initBreakdown"))


async def stored_profiles(platform: Any, name: str) -> tuple[str, dict[str, Any]]:
    """The action's adapter digest and its profile rows by artifact."""
    async with platform.app[sessions_key]() as session:
        digest = await session.scalar(select(Action.artifact_digest).where(Action.name == name))
        rows = await function_profiles(session, platform.settings.guest_namespace, name, digest)
    return digest, {row.artifact: row for row in rows}


async def test_cold_starts_keep_profiles_that_the_api_and_a_restart_show(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip, aiohttp_client) -> None:
    from lorafaas.controller.app import create_app

    await create_action(platform, "pirate", demo_models.adapters["pirate"], make_zip,
                        limits={"timeout": PATIENCE_MS})
    first = await cold_invocation(platform, "pirate")
    assert set(first) == set(ARTIFACTS)
    digest, rows = await stored_profiles(platform, "pirate")
    assert list(rows) == list(ARTIFACTS)  # in load order
    for artifact, row in rows.items():
        assert (row.tier, row.samples) == ("host", 1)
        assert row.load_ms == pytest.approx(first[artifact]) and row.load_ms > 0
    # torch and transformers take far more than a megabyte; so does a LoRA adapter's
    # model wrapping (the demo adapter's weights alone are smaller)
    assert 50 * MB < rows["libraries"].memory_bytes < 4096 * MB
    assert 0 < rows["adapter"].memory_bytes < 1024 * MB
    assert all(row.memory_bytes >= 0 for row in rows.values())

    # Its containers removed, the next invocation starts cold again: a second sample.
    await platform.app[local_invoker_key].pool.remove_function(f"{platform.settings.guest_namespace}/pirate")
    second = await cold_invocation(platform, "pirate")
    _, rows = await stored_profiles(platform, "pirate")
    for artifact, row in rows.items():
        assert row.samples == 2
        assert row.load_ms == pytest.approx(ewma(first[artifact], second[artifact]))

    response = await platform.request("GET", "/api/v1/namespaces/_/actions/pirate",
                                      params={"code": "false"})
    shown = (await response.json())["artifactProfiles"]
    assert [p["artifact"] for p in shown] == list(ARTIFACTS)
    assert shown[2] == {"artifact": "adapter", "tier": "host",
                        "loadMs": round(rows["adapter"].load_ms, 3),
                        "memoryBytes": rows["adapter"].memory_bytes, "samples": 2,
                        "updated": rows["adapter"].updated_ms}

    # A restarted platform plans with the profiles measured before it started.
    await platform.client.close()
    restarted = PlatformClient(await aiohttp_client(create_app(platform.settings)),
                               platform.credential, platform.settings)
    known = restarted.app[local_invoker_key].tracker.profiles.of(
        f"{platform.settings.guest_namespace}/pirate", digest)
    assert known[("libraries", "host")].memory_bytes == rows["libraries"].memory_bytes
    assert {key[0] for key in known} == set(ARTIFACTS)
