"""Rendering a page's context object through its template, inside the common frame."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import Chrome
from lorafaas.console.session import csrf_token
from lorafaas.controller.appkeys import settings_key


def page_context(page: Any) -> dict[str, Any]:
    """The template variables of a page: its fields, by name (not deep-copied)."""
    return {f.name: getattr(page, f.name) for f in fields(page)}


async def chrome(request: web.Request, section: str) -> Chrome:
    """The frame around a page for the signed-in namespace (or nobody)."""
    identity = request.get(console_identity_key)
    namespace = identity.namespace if identity is not None else None
    admins = request.app[settings_key].admin_namespaces
    return Chrome(namespace=namespace, is_admin=namespace is not None and namespace in admins,
                  csrf=await csrf_token(request), section=section)


async def render_page(request: web.Request, page: Any, status: int = 200) -> web.Response:
    """The page's HTML response."""
    context = {**page_context(page), "chrome": await chrome(request, page.SECTION)}
    response = aiohttp_jinja2.render_template(page.TEMPLATE, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response
