"""The console's gate and error pages: sign-in and CSRF checks, errors rendered as HTML.

It sits inside the API's JSON error middleware and handles every path under `/console`,
so console errors never reach the JSON renderer; other paths pass straight through.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import ErrorPage
from lorafaas.console.render import render_page
from lorafaas.console.session import check_csrf, session_identity
from lorafaas.controller.middleware import request_id_key
from lorafaas.errors import LoraFaasError

logger = logging.getLogger(__name__)

PREFIX = "/console"
SIGN_IN = f"{PREFIX}/sign-in"
STATIC = f"{PREFIX}/static/"
_MESSAGES = {
    404: "There is nothing at this address.",
    405: "This page cannot be used that way.",
    413: "The upload is larger than this platform accepts.",
    500: "Something went wrong on our side. Try again; if it keeps failing, quote the "
         "request id below to the operators.",
}


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gate console pages behind a session, check CSRF on every POST, render errors as HTML."""
    if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return await handler(request)
    try:
        if not request.path.startswith(STATIC):
            await _gate(request)
        return await handler(request)
    except LoraFaasError as error:
        return await _error(request, error.status, error.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return await _error(request, error.status, _MESSAGES.get(error.status, error.reason))
    except Exception:
        logger.exception("console request %s %s failed (%s)", request.method, request.path,
                         request.get(request_id_key))
        return await _error(request, 500, _MESSAGES[500])


async def _gate(request: web.Request) -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        await check_csrf(request)
    if request.path == SIGN_IN:
        return
    identity = await session_identity(request)
    if identity is None:
        if request.method == "GET" and not wants_json(request):
            raise web.HTTPSeeOther(f"{SIGN_IN}?next={quote(request.path_qs, safe='')}")
        raise web.HTTPUnauthorized(reason="Your session has ended: sign in again.")
    request[console_identity_key] = identity


def wants_json(request: web.Request) -> bool:
    """Whether the caller is the console's own script (fetch or XMLHttpRequest)."""
    return "application/json" in request.headers.get("Accept", "") or \
        request.path.endswith(".json")


async def _error(request: web.Request, status: int, message: str) -> web.StreamResponse:
    request_id = request.get(request_id_key, "")
    if wants_json(request):
        return web.json_response({"error": message, "code": request_id}, status=status)
    return await render_page(request, ErrorPage(status, message, request_id), status=status)
