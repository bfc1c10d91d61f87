"""Console sign-in state: an encrypted, HttpOnly, SameSite session cookie and CSRF tokens.

The cookie holds the key's uuid, never the key: each request checks the uuid still exists,
so rotating a namespace's key signs its console sessions out.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from aiohttp import web
from aiohttp_session import Session, get_session, new_session
from cryptography.fernet import Fernet

from lorafaas.controller.appkeys import sessions_key
from lorafaas.errors import Forbidden
from lorafaas.registry.models import AuthKey, Namespace
from lorafaas.registry.namespaces import Identity

COOKIE_NAME = "lorafaas_console"
SESSION_MAX_AGE_S = 8 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


def console_key(path: Path) -> bytes:
    """The Fernet key of the session cookies, created (mode 0600) at first start."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(Fernet.generate_key())
    return path.read_bytes().strip()


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token (made on first use)."""
    session = await get_session(request)
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


async def check_csrf(request: web.Request) -> None:
    """Refuse a state-changing request whose form field or header lacks the session's token."""
    session = await get_session(request)
    expected = session.get(CSRF_FIELD)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                   "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not (isinstance(expected, str) and sent and hmac.compare_digest(expected, sent)):
        raise Forbidden("The form has expired or did not come from this console. "
                        "Reload the page and try again.")


async def sign_in(request: web.Request, identity: Identity) -> None:
    """Start a fresh session (a new id and CSRF token) for the identity."""
    session = await new_session(request)
    session["key_uuid"] = identity.key_uuid
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


async def sign_out(request: web.Request) -> None:
    """Forget the session."""
    (await get_session(request)).invalidate()


async def session_identity(request: web.Request) -> Identity | None:
    """Who is signed in, or None (also when the key was rotated or deleted since)."""
    session: Session = await get_session(request)
    key_uuid = session.get("key_uuid")
    if not isinstance(key_uuid, str):
        return None
    async with request.app[sessions_key]() as db:
        key = await db.get(AuthKey, key_uuid)
        namespace = await db.get(Namespace, key.namespace_id) if key is not None else None
    if key is None or namespace is None:
        session.invalidate()
        return None
    return Identity(subject=key.subject, namespace=namespace.name, namespace_id=namespace.id,
                    key_uuid=key.uuid)
