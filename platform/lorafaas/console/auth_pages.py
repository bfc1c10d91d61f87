"""Signing in with a namespace key, and out."""

from __future__ import annotations

from aiohttp import web

from lorafaas.console.pages import SignInPage
from lorafaas.console.render import render_page
from lorafaas.console.session import sign_in, sign_out
from lorafaas.controller.auth import authenticate_limited, client_address
from lorafaas.errors import TooManyRequests, Unauthorized

HOME = "/console/functions"
WRONG_KEY = ("This key was not accepted. Paste the whole key, in the form uuid:key, as "
             "`lorafaas admin namespace create` or `key rotate` printed it.")


def _next_path(value: object) -> str:
    # Only paths inside the console: never an open redirect.
    path = value if isinstance(value, str) else ""
    return path if path.startswith("/console/") and not path.startswith("//") else HOME


async def sign_in_form(request: web.Request) -> web.Response:
    """The sign-in page."""
    return await render_page(request, SignInPage(None, _next_path(request.query.get("next"))))


async def sign_in_submit(request: web.Request) -> web.Response:
    """Check the key; on success a fresh session and a redirect, else the form with the error."""
    form = await request.post()
    next_path = _next_path(form.get("next"))
    credential = str(form.get("key", "")).strip()
    try:
        identity = await authenticate_limited(request.app, client_address(request), credential)
    except Unauthorized:
        return await render_page(request, SignInPage(WRONG_KEY, next_path), status=401)
    except TooManyRequests as error:  # too many failed sign-ins from here, or for this key
        response = await render_page(request, SignInPage(error.message, next_path), status=429)
        response.headers.update(error.headers)
        return response
    await sign_in(request, identity)
    raise web.HTTPSeeOther(next_path)


async def sign_out_submit(request: web.Request) -> web.Response:
    """End the session."""
    await sign_out(request)
    raise web.HTTPSeeOther("/console/sign-in")


async def root_redirect(request: web.Request) -> web.Response:
    """`/` and `/console` lead to the functions."""
    raise web.HTTPFound(HOME)
