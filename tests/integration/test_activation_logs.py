"""Each activation's record holds its own log lines, in OpenWhisk's format (`<time> stdout:
text`): the runtime's answer carries the lines that belong to the activation (the engine's
log still has them too), and a cold start's own lines, which only the engine has, go with
the activation that reports the start. Requests batched in one container, in the batch
form or joined to the continuous decode, each get only their own lines."""

from __future__ import annotations

import asyncio
import re

import docker
import pytest

from lorafaas.controller.app import local_invoker_key
from tests.integration.test_api_resources import ACTIONS, body, json_of

# About functions' own containers: their platform shares none (LORAFAAS_SHARED_CONTAINERS=off).
pytestmark = [pytest.mark.docker, pytest.mark.unshared]
ACTIVATIONS = "/api/v1/namespaces/_/activations"
RECORD_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z (stdout|stderr): ")


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
    # Only what the action wrote: the runtime's own lines as it came up are the container's
    # (`docker logs`), not the cold activation's.
    assert all(RECORD_LINE.match(line) for line in cold["logs"]), cold["logs"]
    assert not any(" runtime INFO " in line for line in cold["logs"]), cold["logs"]
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
    assert RECORD_LINE.match(lines[0]) and refused_id in lines[0]
    assert "'seed' must be an integer" in lines[0]

    after = await invoke(platform, {"prompt": "hi", "max_tokens": 2})
    assert not any("refused" in line for line in after["logs"])  # not another's lines
    assert not any("runtime listening" in line for line in after["logs"])  # nor the start's
    # The engine's log has the line as well: `docker logs` still tells the whole story.
    (instance,) = (await json_of(await platform.request("GET", f"{ACTIONS}/logs"),
                                 200))["instances"]
    client = docker.from_env()
    try:
        engine_log = client.containers.get(instance["container"]).logs().decode()
    finally:
        client.close()
    assert lines[0].split(": ", 1)[1] in engine_log
    assert "runtime listening" in engine_log  # the container's own line stays its own

    await batched_requests_get_only_their_own_lines(container.client)


async def batched_requests_get_only_their_own_lines(client) -> None:  # type: ignore[no-untyped-def]
    """Two requests in one batch, then two joined to the continuous decode at once: the
    refused one's line is in its logs only."""
    refused_id, served_id = "a" * 32, "b" * 32
    payloads = [{"value": {"prompt": "hi", "seed": "not a number"},
                 "activation_id": refused_id, "max_tokens_limit": 64, "logs": True},
                {"value": {"prompt": "hi", "max_tokens": 4}, "activation_id": served_id,
                 "max_tokens_limit": 64, "logs": True}]
    outcomes: dict[int, list[str]] = {}

    async def on_result(index, outcome) -> None:  # type: ignore[no-untyped-def]
        outcomes[index] = outcome.logs

    await client.run_batch(payloads, 64, on_result)
    assert sorted(outcomes) == [0, 1]
    assert [line for line in outcomes[0] if refused_id in line], outcomes[0]
    assert not any(refused_id in line or "refused" in line for line in outcomes[1]), outcomes[1]

    joined = await asyncio.gather(*(client.run({**payload, "continuous": True})
                                    for payload in payloads))
    assert "error" in joined[0].result and "text" in joined[1].result
    assert [line for line in joined[0].logs or [] if refused_id in line], joined[0].logs
    assert not any(refused_id in line or "refused" in line for line in joined[1].logs or []), \
        joined[1].logs
