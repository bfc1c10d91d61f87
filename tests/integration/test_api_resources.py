"""The REST resources as an OpenWhisk user drives them: actions, invoke, activations, limits."""

from __future__ import annotations

import base64
from typing import Any

import pytest

pytestmark = pytest.mark.docker
ACTIONS = "/api/v1/namespaces/_/actions"


def body(zip_bytes: bytes, **extra: Any) -> dict[str, Any]:
    """A PUT body of an action of kind lora."""
    return {"exec": {"kind": "lora", "binary": True,
                     "code": base64.b64encode(zip_bytes).decode()}, **extra}


async def json_of(response, status: int) -> Any:  # type: ignore[no-untyped-def]
    """The JSON body, after checking the status."""
    payload = await response.json()
    assert response.status == status, payload
    return payload


async def test_action_lifecycle(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    code = make_zip(demo_models.adapters["pirate"])
    created = await json_of(await platform.request("PUT", f"{ACTIONS}/a1", json=body(code)), 200)
    assert created["version"] == "0.0.1" and created["namespace"] == "guest"
    await json_of(await platform.request("PUT", f"{ACTIONS}/a1", json=body(code)), 409)
    for version in ("0.0.2", "0.0.3"):
        updated = await json_of(await platform.request(
            "PUT", f"{ACTIONS}/a1", params={"overwrite": "true"},
            json=body(code, parameters=[{"key": "max_tokens", "value": 4}])), 200)
        assert updated["version"] == version
    await json_of(await platform.request("PUT", f"{ACTIONS}/a2", json=body(code)), 200)

    full = await json_of(await platform.request("GET", f"{ACTIONS}/a1"), 200)
    assert base64.b64decode(full["exec"]["code"]) == code
    bare = await json_of(await platform.request("GET", f"{ACTIONS}/a1",
                                                params={"code": "false"}), 200)
    assert "code" not in bare["exec"] and bare["parameters"] == [{"key": "max_tokens", "value": 4}]
    listed = await json_of(await platform.request("GET", ACTIONS), 200)
    assert sorted(a["name"] for a in listed) == ["a1", "a2"]
    page = await json_of(await platform.request("GET", ACTIONS, params={"limit": "1",
                                                                         "skip": "1"}), 200)
    assert len(page) == 1 and page[0]["name"] == listed[1]["name"]

    await json_of(await platform.request("DELETE", f"{ACTIONS}/a1"), 200)
    await json_of(await platform.request("GET", f"{ACTIONS}/a1"), 404)
    await json_of(await platform.request("DELETE", f"{ACTIONS}/a1"), 404)


async def test_invoke_result_and_activation_queries(platform, demo_models, make_zip):  # type: ignore[no-untyped-def]
    await json_of(await platform.request("PUT", f"{ACTIONS}/p",
                                         json=body(make_zip(demo_models.adapters["pirate"]))), 200)
    response = await platform.request("POST", f"{ACTIONS}/p",
                                      params={"blocking": "true", "result": "true"},
                                      json={"prompt": "hi", "max_tokens": 4})
    result = await json_of(response, 200)
    assert set(result) >= {"text", "finish_reason", "usage"}
    activation_id = response.headers["x-openwhisk-activation-id"]

    bad = await platform.request("POST", f"{ACTIONS}/p", params={"blocking": "true"},
                                 json={"prompt": "hi", "max_tokens": -3})
    refused = await json_of(bad, 400)  # refused before it runs: no activation
    assert "max_tokens" in refused["error"]

    activations = "/api/v1/namespaces/_/activations"
    summaries = await json_of(await platform.request("GET", activations, params={"name": "p"}),
                              200)
    assert len(summaries) == 1 and "response" not in summaries[0]
    docs = await json_of(await platform.request("GET", activations, params={"docs": "true"}),
                         200)
    assert {d["activationId"] for d in docs} >= {activation_id}
    assert all("response" in d for d in docs)
    start = next(d["start"] for d in docs if d["activationId"] == activation_id)
    after = await json_of(await platform.request("GET", activations,
                                                 params={"since": str(start + 1)}), 200)
    assert activation_id not in {a["activationId"] for a in after}
    before = await json_of(await platform.request("GET", activations,
                                                  params={"upto": str(start)}), 200)
    assert activation_id in {a["activationId"] for a in before}
    logs = await json_of(await platform.request("GET", f"{activations}/{activation_id}/logs"),
                         200)
    assert isinstance(logs["logs"], list)


async def test_namespaces_limits_and_openapi(platform):  # type: ignore[no-untyped-def]
    assert await json_of(await platform.request("GET", "/api/v1/namespaces"), 200) == ["guest"]
    limits = await json_of(await platform.request("GET", "/api/v1/namespaces/_/limits"), 200)
    assert limits["invocationsPerMinute"] == platform.settings.invocations_per_minute
    document = await json_of(await platform.request("GET", "/api/v1/openapi.json"), 200)
    assert "/api/v1/namespaces/{namespace}/actions/{name}" in document["paths"]
