"""Errors under /v1 in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

OpenAI's clients read this object into their exceptions (`openai.NotFoundError` says the
message); the OpenWhisk shape `{"error": "...", "code": "<request id>"}` would leave them
with only "Error code: 404". `/api` keeps OpenWhisk's shape (middleware.py).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from lorafaas.controller.middleware import request_id_key
from lorafaas.errors import BadRequest, LoraFaasError, NotFound

logger = logging.getLogger(__name__)

V1_PREFIX = "/v1"
REQUEST_ID_HEADER = "x-request-id"
# OpenAI's error types by HTTP status; any other 4xx is an invalid request.
_TYPES = {429: "rate_limit_error", 503: "service_unavailable_error"}
# OpenAI's codes where it has one for the status.
_CODES = {401: "invalid_api_key", 403: "permission_denied", 429: "rate_limit_exceeded"}


class InvalidParameter(BadRequest):
    """A 400 that names the request parameter at fault (OpenAI's `param`)."""

    def __init__(self, message: str, param: str, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ModelNotFound(NotFound):
    """A 404 for a `model` that names no function of the caller's namespace."""

    param = "model"
    code = "model_not_found"


def error_type(status: int) -> str:
    """OpenAI's `type` for an HTTP status."""
    if status in _TYPES:
        return _TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_object(status: int, message: str, param: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    """The `error` object of a response body or of a stream's error event."""
    return {"message": message, "type": error_type(status), "param": param,
            "code": code if code is not None else _CODES.get(status)}


def openai_error_response(status: int, message: str, request_id: str,
                          param: str | None = None, code: str | None = None) -> web.Response:
    """A JSON error response in OpenAI's shape, with the request id in a header."""
    return web.json_response({"error": error_object(status, message, param, code)},
                             status=status, headers={REQUEST_ID_HEADER: request_id})


def is_v1(path: str) -> bool:
    """Whether a path is under the OpenAI-compatible API."""
    return path == V1_PREFIX or path.startswith(V1_PREFIX + "/")


@web.middleware
async def openai_error_middleware(request: web.Request, handler: Handler
                                  ) -> web.StreamResponse:
    """Render every failure under /v1 (auth, routing, validation, the function's own) in
    OpenAI's shape; other paths pass through to the OpenWhisk error middleware."""
    if not is_v1(request.path):
        return await handler(request)
    request_id = _request_id(request)
    try:
        return await handler(request)
    except LoraFaasError as error:
        return openai_error_response(error.status, error.message, request_id,
                                     getattr(error, "param", None), getattr(error, "code", None))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return openai_error_response(error.status, _http_message(request, error), request_id)
    except Exception:
        logger.exception("request %s %s failed (%s)", request.method, request.path, request_id)
        return openai_error_response(500, "The server had an error while processing your "
                                          "request.", request_id)


def _http_message(request: web.Request, error: web.HTTPException) -> str:
    # The errors aiohttp raises itself (no route, wrong method, body too large).
    if error.status == 404:
        return f"Invalid URL ({request.method} {request.path})"
    if error.status == 405:
        return f"Method not allowed ({request.method} {request.path})"
    if error.status == 413:
        return "The request body is too large."
    return error.reason


def _request_id(request: web.Request) -> str:
    return request.get(request_id_key) or uuid.uuid4().hex
