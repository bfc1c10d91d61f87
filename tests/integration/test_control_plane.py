"""Action versions and their artifacts, and invocations that survive a controller restart."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import PendingInvocation
from lorafaas.settings import Settings
from tests.conftest import PlatformClient
from tests.integration.test_api_resources import ACTIONS, body, json_of

pytestmark = pytest.mark.docker
ACTIVATIONS = "/api/v1/namespaces/_/activations"


async def test_versions_keep_their_artifacts_until_pruned_or_deleted(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    history = platform.settings.action_history
    first = make_zip(demo_models.adapters["pirate"])
    later = make_zip(demo_models.adapters["pirate"], prefix="adapter/")  # another digest
    created = await json_of(await platform.request("PUT", f"{ACTIONS}/a", json=body(first)), 200)
    first_dir = platform.settings.artifacts_dir / created["exec"]["digest"]
    for _ in range(history - 1):
        updated = await json_of(await platform.request(
            "PUT", f"{ACTIONS}/a", params={"overwrite": "true"}, json=body(later)), 200)
    later_dir = platform.settings.artifacts_dir / updated["exec"]["digest"]
    versions = await json_of(await platform.request("GET", f"{ACTIONS}/a/versions"), 200)
    assert [v["version"] for v in versions] == [f"0.0.{n}" for n in range(history, 0, -1)]
    assert versions[-1]["exec"]["digest"] == created["exec"]["digest"]
    assert first_dir.is_dir() and later_dir.is_dir()  # the oldest version still uses it

    await json_of(await platform.request("PUT", f"{ACTIONS}/a", params={"overwrite": "true"},
                                         json=body(later)), 200)
    versions = await json_of(await platform.request("GET", f"{ACTIONS}/a/versions"), 200)
    assert [v["version"] for v in versions][-1] == "0.0.2" and len(versions) == history
    assert not first_dir.exists() and later_dir.is_dir()

    await json_of(await platform.request("DELETE", f"{ACTIONS}/a"), 200)
    await json_of(await platform.request("GET", f"{ACTIONS}/a/versions"), 404)
    assert not later_dir.exists()


async def pending_rows(settings: Settings) -> list[PendingInvocation]:
    """The pending invocations in the platform's registry."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessions(engine)() as session:
            return list(await session.scalars(select(PendingInvocation)))
    finally:
        await engine.dispose()


async def leave_pending(settings: Settings, activation_id: str, name: str) -> None:
    """Write a pending invocation, as a controller that crashed with it in flight leaves it."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessions(engine)() as session, session.begin():
            session.add(PendingInvocation(
                activation_id=activation_id, namespace=settings.guest_namespace, action=name,
                subject=settings.guest_namespace,
                parameters={"prompt": "hi", "max_tokens": 4},
                received_ms=int(time.time() * 1000)))
    finally:
        await engine.dispose()


async def wait_for_record(platform: PlatformClient, activation_id: str) -> Any:
    """The activation's record, once written."""
    for _ in range(600):
        response = await platform.request("GET", f"{ACTIVATIONS}/{activation_id}")
        if response.status == 200:
            return await response.json()
        await asyncio.sleep(0.2)
    raise AssertionError(f"no record of activation {activation_id}")


async def test_pending_invocations_run_after_a_restart(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip, aiohttp_client) -> None:
    from lorafaas.controller.app import create_app

    await json_of(await platform.request("PUT", f"{ACTIONS}/p",
                                         json=body(make_zip(demo_models.adapters["pirate"]))), 200)
    await json_of(await platform.request("POST", f"{ACTIONS}/p", params={"blocking": "true"},
                                         json={"prompt": "hi", "max_tokens": 4}), 200)
    assert await pending_rows(platform.settings) == []  # a normal invoke leaves none
    await platform.client.close()

    activation_id = uuid.uuid4().hex
    await leave_pending(platform.settings, activation_id, "p")
    restarted = PlatformClient(await aiohttp_client(create_app(platform.settings)),
                               platform.credential, platform.settings)
    record = await wait_for_record(restarted, activation_id)
    assert record["name"] == "p" and record["response"]["statusCode"] == 0
    assert record["response"]["result"]["text"]
    assert await pending_rows(platform.settings) == []
