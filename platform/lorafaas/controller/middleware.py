"""Request ids and error rendering: every error is JSON, in the shape of the API it hit.

Under `/api` (and every other path the console does not render) the shape is OpenWhisk's
`{"error", "code"}`. Other shapes hook in by path prefix through `error_renderers_key`: the
application maps `/v1/` to OpenAI's error object (`openai_error_response`), which the
OpenAI module may replace by its own renderer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from lorafaas.errors import BadRequest, LoraFaasError

logger = logging.getLogger(__name__)

request_id_key = web.RequestKey("request_id", str)

# Messages for the errors aiohttp raises itself, in OpenWhisk's words where it has them.
HTTP_MESSAGES = {
    400: "The request content was malformed.",
    404: "The requested resource does not exist.",
    405: "Method not allowed.",
    413: "The request content was malformed: the request entity is too large.",
    431: "The request's header fields are too large.",
}
# Headers of aiohttp's own errors worth passing on (a 405 names the methods allowed).
_KEPT_HEADERS = ("Allow", "Retry-After")


@dataclass(frozen=True)
class ErrorInfo:
    """One failed request, before it is rendered."""

    status: int
    message: str
    request_id: str
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


ErrorRenderer = Callable[[ErrorInfo], web.Response]
# (path prefix, renderer) pairs, tried in order; OpenWhisk's shape where none matches.
error_renderers_key = web.AppKey("error_renderers", tuple[tuple[str, ErrorRenderer], ...])


def error_response(status: int, message: str, request_id: str) -> web.Response:
    """The JSON body every failed request under /api gets (OpenWhisk's shape)."""
    return web.json_response({"error": message, "code": request_id}, status=status)


def openwhisk_error(info: ErrorInfo) -> web.Response:
    """OpenWhisk's `{"error", "code"}`."""
    response = error_response(info.status, info.message, info.request_id)
    response.headers.update(info.headers)
    return response


_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 403: "permission_error", 404: "not_found_error", 413: "invalid_request_error",
                 429: "rate_limit_error"}


def openai_error_response(info: ErrorInfo) -> web.Response:
    """OpenAI's error object `{"error": {"message", "type", "param", "code"}}`."""
    kind = _OPENAI_TYPES.get(info.status, "invalid_request_error" if info.status < 500
                             else "server_error")
    body = {"error": {"message": info.message, "type": kind, "param": info.param,
                      "code": info.request_id}}
    return web.json_response(body, status=info.status, headers=dict(info.headers))


def renderer_for(renderers: tuple[tuple[str, ErrorRenderer], ...], path: str) -> ErrorRenderer:
    """The renderer of the first prefix `path` starts with, else OpenWhisk's."""
    return next((render for prefix, render in renderers if path.startswith(prefix)),
                openwhisk_error)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id; turn every exception into a JSON error, never a trace."""
    request_id = uuid.uuid4().hex
    request[request_id_key] = request_id
    render = renderer_for(request.app.get(error_renderers_key, ()), request.path)
    try:
        slashless = await without_trailing_slash(request)
        if slashless is not None:
            check_text_parameters(slashless)
            return await slashless.match_info.handler(slashless)
        check_text_parameters(request)
        return await handler(request)
    except LoraFaasError as error:
        return render(ErrorInfo(error.status, error.message, request_id, error.param,
                                error.headers))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = HTTP_MESSAGES.get(error.status, error.reason)
        headers = {name: error.headers[name] for name in _KEPT_HEADERS if name in error.headers}
        return render(ErrorInfo(error.status, message, request_id, headers=headers))
    except Exception:
        logger.exception("request %s %s failed (%s)", request.method, request.path, request_id)
        return render(ErrorInfo(500, "Internal server error.", request_id))


def check_text_parameters(request: web.Request) -> None:
    """Refuse path and query values no database can store: NUL, or undecodable bytes."""
    for source, values in (("path", request.match_info.items()),
                           ("query", request.query.items())):
        for name, value in values:
            if not storable_text(name) or not storable_text(value):
                raise BadRequest(f"The {source} parameter {name!r} holds a NUL character or "
                                 "bytes that are not UTF-8.", param=name)


def storable_text(text: str) -> bool:
    """Whether the text is valid Unicode without NUL (PostgreSQL refuses both)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: undecodable bytes, or a `\ud800` escape
        return False
    return True


async def without_trailing_slash(request: web.Request) -> web.Request | None:
    """For a path under /api that matches no route only for its trailing slash, the same
    request without it (OpenWhisk serves `.../actions/` as `.../actions`); else None.

    Its handler is called directly: the middlewares after this one serve /v1 only."""
    path = request.path
    if request.match_info.http_exception is None or not path.startswith("/api/") or \
            not path.endswith("/"):
        return None
    url = request.rel_url.with_path(path.rstrip("/") or "/")
    alternative = request.clone(rel_url=url)
    match = await request.app.router.resolve(alternative)
    if match.http_exception is not None:
        return None
    match.add_app(request.app)
    match.freeze()
    alternative._match_info = match  # aiohttp's own normalize_path_middleware does the same
    return alternative


# OpenWhisk's CORS answer on its REST API (CorsSettings.RestAPIs): web actions, which
# answer for themselves, are left out.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Origin, X-Requested-With, Content-Type, "
                                    "Accept, User-Agent",
    "Access-Control-Allow-Methods": "GET, DELETE, POST, PUT, HEAD",
}
_WEB_ACTIONS = "/api/v1/web/"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """200 to an OPTIONS under /api that no route takes (a browser's preflight), as
    OpenWhisk answers it; its CORS headers come with `add_cors_headers`."""
    if request.method == "OPTIONS" and _under_rest_api(request.path) and \
            request.match_info.http_exception is not None:
        return web.Response(status=200)
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """OpenWhisk's CORS headers on every answer under /api (an `on_response_prepare`
    signal, so that streamed answers and errors get them too)."""
    if _under_rest_api(request.path):
        for name, value in CORS_HEADERS.items():
            response.headers.setdefault(name, value)


def _under_rest_api(path: str) -> bool:
    return (path == "/api" or path.startswith("/api/")) and not path.startswith(_WEB_ACTIONS)
