"""Invocations over the namespace's throttles get 429 with OpenWhisk's message."""

from __future__ import annotations

import base64

import pytest

from lorafaas.settings import replace

pytestmark = pytest.mark.docker


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """A namespace allowed two invocations a minute."""
    return replace(settings, invocations_per_minute=2, concurrent_invocations=2)


async def test_third_invocation_in_a_minute_gets_429(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    code = base64.b64encode(make_zip(demo_models.adapters["shout"])).decode()
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/s",
                                      json={"exec": {"kind": "lora", "binary": True,
                                                     "code": code}})
    assert response.status == 200
    for _ in range(2):
        response = await platform.request("POST", "/api/v1/namespaces/_/actions/s",
                                          params={"blocking": "true"},
                                          json={"prompt": "hi", "max_tokens": 2})
        assert response.status == 200, await response.json()
    response = await platform.request("POST", "/api/v1/namespaces/_/actions/s",
                                      params={"blocking": "true"}, json={"prompt": "hi"})
    answer = await response.json()
    assert response.status == 429, answer
    assert "Too many requests in the last minute (count: 2, allowed: 2)" in answer["error"]
