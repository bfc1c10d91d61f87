"""First start: the guest namespace, its key, and the `.wskprops`-style props file."""

from __future__ import annotations

from lorafaas.errors import Unauthorized
from lorafaas.props import read_props
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.namespaces import add_key, authenticate, create_namespace, find_namespace
from lorafaas.settings import Settings


async def ensure_guest(settings: Settings) -> str:
    """The guest's `uuid:key`: the one in the props file if it still works, else a new one."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessions(engine)() as session, session.begin():
            credential = read_props(settings.props_file).get("AUTH", "")
            try:
                identity = await authenticate(session, credential)
                if identity.namespace == settings.guest_namespace:
                    return credential
            except Unauthorized:
                pass
            namespace = await find_namespace(session, settings.guest_namespace)
            if namespace is None:
                return await create_namespace(session, settings.guest_namespace)
            return await add_key(session, namespace, subject=settings.guest_namespace)
    finally:
        await engine.dispose()
