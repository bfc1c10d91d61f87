"""The API reference: `/api/v1/openapi.json` rendered by Swagger UI, served from this host.

Swagger UI's files come from the `swagger-ui-bundle` package (a pinned dependency), so the
page needs no network beyond the platform itself.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from aiohttp import web

from lorafaas.console.pages import ApiReferencePage
from lorafaas.console.render import render_page
from lorafaas.controller.openapi import OPENAPI_PATH

SWAGGER_UI_DIR = Path(swagger_ui_bundle.swagger_ui_path)
SWAGGER_UI_PREFIX = "/console/static/swagger-ui/"


def renderer_name() -> str:
    """The renderer and its version, from the bundle's folder (`swagger-ui-4.15.5`)."""
    version = SWAGGER_UI_DIR.name.removeprefix("swagger-ui-")
    return f"Swagger UI {version}"


async def api_reference_page(request: web.Request) -> web.Response:
    """The reference page."""
    return await render_page(request, ApiReferencePage(spec_url=OPENAPI_PATH,
                                                       renderer=renderer_name(),
                                                       assets=SWAGGER_UI_PREFIX))
