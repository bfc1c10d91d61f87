"""First start: the guest namespace, its key, and the `.wskprops`-style props file."""

from __future__ import annotations

import os
from pathlib import Path

from lorafaas.errors import Unauthorized
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.namespaces import add_key, authenticate, create_namespace, find_namespace
from lorafaas.settings import Settings


def read_props(path: Path) -> dict[str, str]:
    """KEY=value lines of a props file (missing file: empty)."""
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def write_props(path: Path, values: dict[str, str]) -> None:
    """Write the props file, readable only by its owner (it holds a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**read_props(path), **values}
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(f"{key}={value}\n" for key, value in merged.items()))
    os.chmod(temporary, 0o600)
    temporary.replace(path)


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
