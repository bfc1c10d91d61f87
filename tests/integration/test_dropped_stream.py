"""A client that drops a stream, against the real Docker engine: its generation is cancelled,
the activation records the cut (finish_reason "cancelled", usage up to it), and the
container is free for the next request at once (it is served warm); the stream running
alone in its container, or in the container's continuous-batching engine."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from lorafaas.settings import Settings, replace
from tests.integration.test_end_to_end import create_action, invoke

pytestmark = pytest.mark.docker
MAX_TOKENS = 256  # far more than the test reads: uncancelled, it would run them all


@pytest.fixture(params=["eager", "continuous"])
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The platform's settings, the stream alone in its container or joined to the
    container's continuous-batching engine."""
    return replace(settings, batching=request.param)


async def read_one_chunk(response: Any) -> dict[str, Any]:
    """The first server-sent event that carries text."""
    async for line in response.content:
        if line.startswith(b"data: {"):
            chunk = json.loads(line[len(b"data: "):])
            if chunk["choices"] and chunk["choices"][0].get("text"):
                return dict(chunk)
    raise AssertionError("the stream ended before any text")


async def activation(platform: Any, activation_id: str) -> dict[str, Any]:
    """The activation's record once it is stored (a generous deadline: cores are shared)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        response = await platform.request("GET", f"/api/v1/namespaces/_/activations/"
                                                 f"{activation_id}")
        if response.status == 200:
            return dict(await response.json())
        await asyncio.sleep(0.5)
    raise AssertionError(f"activation {activation_id} was never recorded")


async def test_a_dropped_stream_is_cancelled_recorded_and_frees_its_container(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip):
    await create_action(platform, "pirate", demo_models.adapters["pirate"], make_zip,
                        limits={"max_tokens": MAX_TOKENS})
    response = await platform.request("POST", "/v1/completions", json={
        "model": "pirate", "prompt": "Tell me a long story about a ship", "stream": True,
        "max_tokens": MAX_TOKENS, "temperature": 0, "ignore_eos": True})
    assert response.status == 200
    activation_id = response.headers["x-openwhisk-activation-id"]
    await read_one_chunk(response)
    response.close()  # the client goes away mid-stream

    record = await activation(platform, activation_id)
    result = record["response"]["result"]
    assert record["response"]["statusCode"] == 0
    assert result["finish_reason"] == "cancelled"
    assert 1 <= result["usage"]["completion_tokens"] < MAX_TOKENS  # billed up to the cut
    cost = next(a["value"] for a in record["annotations"] if a["key"] == "cost")
    assert cost, "the cut activation is still metered"

    status, served, _ = await invoke(platform, "pirate", prompt="Ahoy", max_tokens=4)
    assert status == 200, served
    annotations = {a["key"]: a["value"] for a in served["annotations"]}
    assert annotations["startKind"] == "warm"  # the streamed one's container, freed
