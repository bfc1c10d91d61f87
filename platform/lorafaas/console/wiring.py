"""Mounting the console on the platform's app: templates, sessions, its gate, its routes."""

from __future__ import annotations

import warnings
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from lorafaas.console import (
    activations,
    api_reference,
    auth_pages,
    functions,
    packages,
    platform_page,
    triggers,
    upload,
    usage,
)
from lorafaas.console.middleware import console_middleware
from lorafaas.console.session import COOKIE_NAME, SESSION_MAX_AGE_S, console_key
from lorafaas.settings import Settings

# The repository's `console/` folder: templates and static files (see ARCHITECTURE.md).
CONSOLE_DIR = Path(__file__).resolve().parents[3] / "console"
TEMPLATES_DIR = CONSOLE_DIR / "templates"
STATIC_DIR = CONSOLE_DIR / "static"


def template_environment_options() -> dict[str, object]:
    """Jinja options: autoescaping, and a missing context field is an error, not blank."""
    return {"undefined": jinja2.StrictUndefined, "autoescape": True,
            "trim_blocks": True, "lstrip_blocks": True}


def setup_console(app: web.Application, settings: Settings) -> None:
    """Add the console under `/console` and a redirect from `/`."""
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                         **template_environment_options())  # type: ignore[arg-type]
    storage = EncryptedCookieStorage(Fernet(console_key(settings.console_key_file)),
                                     cookie_name=COOKIE_NAME, path="/console", httponly=True,
                                     samesite="Strict", max_age=SESSION_MAX_AGE_S)
    # aiohttp_session 2.12 keys the request with strings; its own business, not ours.
    warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")
    setup_sessions(app, storage)
    app.middlewares.append(console_middleware)
    app.add_routes(console_routes())
    # The renderer's own files first: its prefix lies inside the console's static one.
    app.router.add_static(api_reference.SWAGGER_UI_PREFIX, api_reference.SWAGGER_UI_DIR,
                          name="swagger_ui")
    app.router.add_static("/console/static/", STATIC_DIR, name="console_static")


def console_routes() -> list[web.RouteDef]:
    """Every console page."""
    return [
        web.get("/", auth_pages.root_redirect),
        web.get("/console", auth_pages.root_redirect),
        web.get("/console/", auth_pages.root_redirect),
        web.get("/console/sign-in", auth_pages.sign_in_form),
        web.post("/console/sign-in", auth_pages.sign_in_submit),
        web.post("/console/sign-out", auth_pages.sign_out_submit),
        web.get("/console/functions", functions.list_functions),
        web.get("/console/packages", packages.list_packages),
        web.get("/console/upload", upload.upload_form),
        web.post("/console/upload", upload.upload_submit),
        web.get("/console/functions/{name}", functions.function_page),
        web.post("/console/functions/{name}/invoke", functions.invoke_submit),
        web.post("/console/functions/{name}/run", functions.run_submit),
        web.post("/console/functions/{name}/stream", functions.stream_completion),
        web.post("/console/functions/{name}/limits", functions.limits_submit),
        web.post("/console/functions/{name}/delete", functions.delete_submit),
        web.get("/console/activations/{id}", activations.activation_page),
        web.get("/console/activations/{id}/summary.json", activations.activation_summary),
        web.get("/console/triggers", triggers.triggers_page),
        web.get("/console/usage", usage.usage_page),
        web.get("/console/usage.csv", usage.usage_csv),
        web.get("/console/platform", platform_page.platform_page),
        web.get("/console/api-reference", api_reference.api_reference_page),
    ]
