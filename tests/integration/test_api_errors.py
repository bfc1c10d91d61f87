"""Every failure under /api is a JSON `{"error", "code"}`, never HTML or a stack trace."""

from __future__ import annotations

import aiohttp
import pytest

pytestmark = pytest.mark.docker


async def error_of(response) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The JSON error body, checked for its shape."""
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error", "code"} and body["error"] and body["code"]
    return body


async def test_missing_and_wrong_credentials_get_401(platform):  # type: ignore[no-untyped-def]
    response = await platform.client.get("/api/v1/namespaces/_/actions")
    assert response.status == 401
    await error_of(response)
    wrong = {"Authorization": aiohttp.encode_basic_auth("00000000-0000-0000-0000-000000000000",
                                                        "nope")}
    response = await platform.client.get("/api/v1/namespaces/_/actions", headers=wrong)
    assert response.status == 401
    await error_of(response)


async def test_other_namespace_is_forbidden(platform):  # type: ignore[no-untyped-def]
    response = await platform.request("GET", "/api/v1/namespaces/someone-else/actions")
    assert response.status == 403
    await error_of(response)


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/v1/nothing-here", 404),
    ("GET", "/api/v1/namespaces/_/actions/absent", 404),
    ("GET", "/api/v1/namespaces/_/activations/0123456789abcdef0123456789abcdef", 404),
    ("PATCH", "/api/v1/namespaces/_/actions/x", 405),
])
async def test_not_found_and_not_allowed_are_json(platform, method, path, status):  # type: ignore[no-untyped-def]
    response = await platform.request(method, path)
    assert response.status == status
    await error_of(response)


async def test_malformed_json_is_a_400(platform):  # type: ignore[no-untyped-def]
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/x", data=b"{not json",
                                      headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "malformed" in (await error_of(response))["error"]


async def test_wrong_kind_and_bad_limits_are_named(platform):  # type: ignore[no-untyped-def]
    response = await platform.request("PUT", "/api/v1/namespaces/_/actions/x",
                                      json={"exec": {"kind": "nodejs:20", "code": "x"}})
    assert response.status == 400 and "nodejs:20" in (await error_of(response))["error"]
    response = await platform.request(
        "PUT", "/api/v1/namespaces/_/actions/x",
        json={"exec": {"kind": "lora", "binary": True, "code": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
              "limits": {"timeout": 5}})
    assert response.status == 400
    assert "requirement failed: duration 5 milliseconds below allowed threshold of 100 " \
        "milliseconds" in (await error_of(response))["error"]


@pytest.mark.parametrize("header", ["Basic !!!not-base64", "Basic " + "bm9jb2xvbg==",
                                    "Digest abc", "Bearer "])
async def test_malformed_authorization_header_gets_401(platform, header):  # type: ignore[no-untyped-def]
    response = await platform.client.get("/api/v1/namespaces/_/actions",
                                         headers={"Authorization": header})
    assert response.status == 401
    await error_of(response)


async def test_another_namespaces_action_is_forbidden(platform):  # type: ignore[no-untyped-def]
    from lorafaas.controller.appkeys import sessions_key
    from lorafaas.registry.namespaces import create_namespace

    async with platform.app[sessions_key]() as session, session.begin():
        alice = await create_namespace(session, "alice")
    headers = {"Authorization": aiohttp.encode_basic_auth(*alice.split(":", 1))}
    for method in ("GET", "DELETE", "POST"):
        response = await platform.client.request(
            method, "/api/v1/namespaces/guest/actions/anything", headers=headers)
        assert response.status == 403, method
        assert "guest" in (await error_of(response))["error"]
