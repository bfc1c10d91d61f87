"""An upload over the configured size limit gets 413 and leaves nothing behind."""

from __future__ import annotations

import pytest

from lorafaas.settings import replace
from tests.integration.test_adapter_refusals import body, registry_counts, stored_files

pytestmark = pytest.mark.docker
LIMIT = 256 * 1024


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """A platform whose upload limit is below the demo adapter's size."""
    return replace(settings, max_adapter_bytes=LIMIT)


async def test_upload_over_the_limit_gets_413(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    zip_bytes = make_zip(demo_models.adapters["pirate"])
    assert len(zip_bytes) > LIMIT
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/big",
                                      json=body(zip_bytes))
    answer = await response.json()
    assert response.status == 413, answer
    assert "error" in answer and "code" in answer
    assert await registry_counts(platform) == (0, 0)
    assert stored_files(platform.settings) == []
