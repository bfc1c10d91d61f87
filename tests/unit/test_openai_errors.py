"""Error rendering: OpenAI's error object under /v1 for every failure, OpenWhisk's under /api."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from lorafaas.controller.middleware import error_middleware
from lorafaas.controller.openai_errors import openai_error_middleware
from lorafaas.controller.throttle import TooManyRequests
from lorafaas.errors import BadRequest, Unauthorized


def raising(error: Exception) -> Any:
    """A handler that fails with `error`."""
    async def handler(request: web.Request) -> web.Response:
        raise error
    return handler


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    """The two middlewares in the platform's order, on handlers that fail in each way."""
    app = web.Application(middlewares=[error_middleware, openai_error_middleware])
    for prefix in ("/v1", "/api/v1"):
        app.router.add_post(f"{prefix}/bad", raising(BadRequest("'n' is wrong")))
        app.router.add_get(f"{prefix}/who", raising(Unauthorized("who are you")))
        app.router.add_get(f"{prefix}/busy", raising(TooManyRequests("slow down")))
        app.router.add_get(f"{prefix}/crash", raising(RuntimeError("secret detail")))
    return await aiohttp_client(app)


@pytest.mark.parametrize(("method", "path", "status", "kind", "code", "message"), [
    ("POST", "/v1/bad", 400, "invalid_request_error", None, "'n' is wrong"),
    ("GET", "/v1/who", 401, "invalid_request_error", "invalid_api_key", "who are you"),
    ("GET", "/v1/busy", 429, "rate_limit_error", "rate_limit_exceeded", "slow down"),
    ("GET", "/v1/crash", 500, "server_error", None,
     "The server had an error while processing your request."),
    ("GET", "/v1/absent", 404, "invalid_request_error", None, "Invalid URL (GET /v1/absent)"),
    ("GET", "/v1/bad", 405, "invalid_request_error", None, "Method not allowed (GET /v1/bad)"),
])
async def test_v1_errors_are_openai_error_objects(client: Any, method: str, path: str,
                                                  status: int, kind: str, code: str | None,
                                                  message: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    response = await client.request(method, path)
    assert response.status == status
    assert await response.json() == {"error": {"message": message, "type": kind,
                                               "param": None, "code": code}}
    assert len(response.headers["x-request-id"]) == 32
    if status == 500:
        assert "secret detail" in caplog.text  # logged, not shown


@pytest.mark.parametrize(("method", "path", "status"), [
    ("POST", "/api/v1/bad", 400), ("GET", "/api/v1/who", 401), ("GET", "/api/v1/busy", 429),
    ("GET", "/api/v1/crash", 500), ("GET", "/api/v1/absent", 404),
    ("GET", "/v1x/absent", 404),
])
async def test_other_paths_keep_openwhisk_s_shape(client: Any, method: str, path: str,
                                                  status: int) -> None:
    response = await client.request(method, path)
    body = await response.json()
    assert response.status == status
    assert set(body) == {"error", "code"} and isinstance(body["error"], str)
