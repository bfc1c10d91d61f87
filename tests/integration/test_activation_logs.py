"""Each activation's record holds its own log lines: on a cold start from the engine's log,
on a warm one from the runtime's answer (which the engine's log still has too)."""

from __future__ import annotations

import re

import docker
import pytest

from lorafaas.controller.app import local_invoker_key
from tests.integration.test_api_resources import ACTIONS, body, json_of

pytestmark = pytest.mark.docker
ACTIVATIONS = "/api/v1/namespaces/_/activations"
ENGINE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


async def invoke(platform, parameters):  # type: ignore[no-untyped-def]
    """A blocking invocation's record (whatever its status)."""
    response = await platform.request("POST", f"{ACTIONS}/logs", params={"blocking": "true"},
                                      json=parameters)
    assert response.status in (200, 502), await response.text()
    record = await response.json()
    stored = await json_of(await platform.request(
        "GET", f"{ACTIVATIONS}/{record['activationId']}"), 200)
    assert stored["logs"] == record["logs"]  # the answer is the record
    return stored


async def test_a_warm_activation_logs_its_own_lines(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip) -> None:
    await json_of(await platform.request(
        "PUT", f"{ACTIONS}/logs", json=body(make_zip(demo_models.adapters["pirate"]))), 200)
    cold = await invoke(platform, {"prompt": "hi", "max_tokens": 2})
    assert cold["response"]["statusCode"] == 0
    warm = await invoke(platform, {"prompt": "hi", "max_tokens": 2})
    notes = {a["key"]: a["value"] for a in warm["annotations"]}
    assert notes["startKind"] == "warm"

    # The controller refuses such parameters before anything runs, so the runtime is asked
    # directly, over the warm container's socket, as the invoker asks it.
    (container,) = [c for c in platform.app[local_invoker_key].pool.containers() if c.function_key is not None]
    refused_id = "f" * 32
    refused = await container.client.run({"value": {"prompt": "hi", "seed": "not a number"},
                                          "activation_id": refused_id, "logs": True})
    assert "error" in refused.result  # an application error
    lines = [line for line in refused.logs or [] if "refused" in line]
    assert len(lines) == 1, refused.logs
    assert ENGINE_LINE.match(lines[0]) and refused_id in lines[0]
    assert "'seed' must be an integer" in lines[0]

    after = await invoke(platform, {"prompt": "hi", "max_tokens": 2})
    assert not any("refused" in line for line in after["logs"])  # not another's lines
    # The engine's log has the line as well: `docker logs` still tells the whole story.
    (instance,) = (await json_of(await platform.request("GET", f"{ACTIONS}/logs"),
                                 200))["instances"]
    client = docker.from_env()
    try:
        engine_log = client.containers.get(instance["container"]).logs().decode()
    finally:
        client.close()
    assert lines[0].split(" ", 1)[1] in engine_log
