"""Fixtures of the integration tests that drive the invoker's parts directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lorafaas.backbone.supervisor import BackboneEndpoint, BackboneServerProcess
from lorafaas.invoker.pool import BackboneMounts


@pytest.fixture
async def backbone(demo_models, short_dir: Path) -> AsyncIterator[BackboneMounts]:  # type: ignore[no-untyped-def]
    """A backbone server for the pool's containers."""
    endpoint = BackboneEndpoint("demo", short_dir / "bb" / "attach.sock",
                                Path("/dev/shm") / f"lorafaas-pool-{uuid.uuid4().hex[:8]}")
    server = BackboneServerProcess(endpoint, demo_models.backbone_dir)
    await server.start()
    yield BackboneMounts(endpoint.socket_path, endpoint.publish_dir)
    await server.stop()
