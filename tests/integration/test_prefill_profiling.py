"""Prefill profiling on the real Docker engine: a deployed function's adapter rank is profiled
in a one-off container of the runtime image, the fit is stored and shown by the API, a
restarted platform uses it, and `lorafaas admin profile` measures it again."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lorafaas.backbone.checkpoint import checkpoint_digest
from lorafaas.controller.app import local_invoker_key
from lorafaas.controller.appkeys import sessions_key
from lorafaas.invoker.backend import LABEL_ACTION, LABEL_INVOKER
from lorafaas.invoker.prefill_runner import PROFILE_LABEL
from lorafaas.registry.models import PrefillProfileRecord
from lorafaas.settings import Settings, replace
from tests.conftest import PlatformClient
from tests.integration.test_end_to_end import create_action

pytestmark = pytest.mark.docker

LORAFAAS = Path(sys.executable).parent / "lorafaas"
# Loading the backbone and 3 sweeps of b = 1…16 on a loaded 2-core machine.
PATIENCE_S = 600
PROMPT_LENGTH = 32  # one length keeps the test short; b = 1…16 as in production


@pytest.fixture
def profiling_settings(settings: Settings) -> Settings:
    """The test platform's settings with background profiling on, at one prompt length."""
    return replace(settings, prefill_profiling="auto", prefill_prompt_lengths=(PROMPT_LENGTH,))


async def start_platform(settings: Settings, aiohttp_client: Any) -> PlatformClient:
    """A running platform on these settings, and the guest's key."""
    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.registry.db import upgrade

    upgrade(settings.database_url)
    credential = await ensure_guest(settings)
    return PlatformClient(await aiohttp_client(create_app(settings)), credential, settings)


async def stored_rows(platform: PlatformClient) -> list[PrefillProfileRecord]:
    """Every stored prefill profile."""
    async with platform.app[sessions_key]() as session:
        return list(await session.scalars(select(PrefillProfileRecord)))


async def prefill_model(platform: PlatformClient, name: str) -> dict[str, Any]:
    """The prefill model GET action shows."""
    response = await platform.request("GET", f"/api/v1/namespaces/_/actions/{name}",
                                      params={"code": "false"})
    body = await response.json()
    assert response.status == 200, body
    return dict(body["prefillModel"])


def profiler_containers(docker_client: Any, settings: Settings) -> list[Any]:
    """Profiler containers of the test's invoker, running or not."""
    return docker_client.containers.list(all=True, filters={"label": [
        f"{LABEL_INVOKER}={settings.invoker_id}", f"{LABEL_ACTION}={PROFILE_LABEL}"]})


def admin_profile(settings: Settings, rank: int) -> subprocess.CompletedProcess[str]:
    """`lorafaas admin profile --rank R` on the test platform's registry, image and models."""
    env = {**os.environ, "LORAFAAS_HOME": str(settings.home),
           "LORAFAAS_DATABASE_URL": settings.database_url,
           "LORAFAAS_RUNTIME_IMAGE": settings.runtime_image,
           "LORAFAAS_BACKBONE": str(settings.backbone_dir), "LORAFAAS_RUN_DIR": str(settings.run_dir),
           "LORAFAAS_INVOKER_ID": settings.invoker_id,
           "LORAFAAS_PREFILL_PROMPT_LENGTHS": str(PROMPT_LENGTH)}
    return subprocess.run([str(LORAFAAS), "admin", "profile", "--rank", str(rank)], env=env,
                          capture_output=True, text=True, timeout=PATIENCE_S, check=False)


def check_row(row: PrefillProfileRecord, rank: int, settings: Settings) -> None:
    """A plausible profile of b = 1…16 under this deployment's key."""
    assert (row.adapter_rank, row.prompt_length) == (rank, PROMPT_LENGTH)
    assert [b for b, _ in row.samples] == list(range(1, 17))
    assert all(ms > 0 for _, ms in row.samples)
    assert row.t0_ms > 0 and math.isfinite(row.alpha_ms) and row.r2 <= 1.0
    assert row.backbone == settings.backbone_dir.name
    assert row.backbone_digest == checkpoint_digest(settings.backbone_dir)
    assert row.image.startswith("sha256:")
    assert f"{settings.container_torch_threads} torch threads" in row.machine


async def test_a_deployed_rank_is_profiled_stored_shown_and_kept_across_restarts(  # type: ignore[no-untyped-def]
        profiling_settings: Settings, demo_models, make_zip, aiohttp_client,
        docker_client) -> None:
    settings = profiling_settings
    platform = await start_platform(settings, aiohttp_client)
    created = await create_action(platform, "pirate", demo_models.adapters["pirate"], make_zip)
    rank = next(a["value"]["rank"] for a in created["annotations"] if a["key"] == "adapter")
    # Deploying queued the rank: the profile runs in the background, the API answers meanwhile.
    assert (await prefill_model(platform, "pirate"))["source"] in ("default", "profiled")
    await asyncio.wait_for(platform.app[local_invoker_key].prefill.idle(), PATIENCE_S)

    [row] = await stored_rows(platform)
    check_row(row, rank, settings)
    shown = await prefill_model(platform, "pirate")
    assert shown == {"source": "profiled", "adapterRank": rank, "t0Ms": round(row.t0_ms, 3),
                     "alphaMs": round(row.alpha_ms, 3), "r2": round(row.r2, 4),
                     "promptLength": PROMPT_LENGTH, "measuredAt": row.measured_ms}
    assert profiler_containers(docker_client, settings) == []

    # A restarted platform, profiling off, sizes the rank's batches by the stored fit.
    await platform.client.close()
    restarted = await start_platform(replace(settings, prefill_profiling="off"), aiohttp_client)
    assert (await prefill_model(restarted, "pirate"))["measuredAt"] == row.measured_ms

    # The admin command profiles again now: it prints the table and replaces the row.
    result = await asyncio.to_thread(admin_profile, settings, rank)
    assert result.returncode == 0, result.stderr
    assert f"adapter rank {rank} (adapter of {settings.guest_namespace}/pirate)" in result.stdout
    assert f"prompt length {PROMPT_LENGTH} tokens" in result.stdout
    assert "R² = " in result.stdout and result.stdout.count("\n 16 ") == 1
    [again] = await stored_rows(restarted)
    check_row(again, rank, settings)
    assert again.measured_ms > row.measured_ms
    assert profiler_containers(docker_client, settings) == []
