"""Namespaces and their `uuid:key` credentials: keys stored hashed, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import BadRequest, Conflict, NotFound, Unauthorized
from lorafaas.names import ENTITY_NAME, MAX_NAME_LENGTH, QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry.artifacts import drop_reference
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import (
    Action,
    Activation,
    ArtifactProfile,
    AuthKey,
    Namespace,
    Package,
    PendingInvocation,
)
from lorafaas.registry.triggers import delete_namespace_triggers

NAME_MAX_LENGTH = MAX_NAME_LENGTH  # a namespace's name is an entity name (names.py)


@dataclass(frozen=True)
class Identity:
    """Who is calling: the subject and the namespace its key belongs to."""

    subject: str
    namespace: str
    namespace_id: int
    key_uuid: str


def hash_key(key: str) -> str:
    """The stored form of a key (keys are 64 random hex characters, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_namespace(session: AsyncSession, name: str) -> str:
    """Create a namespace with one key; return the `uuid:key` credential (shown once)."""
    check_namespace_name(name)
    if await find_namespace(session, name) is not None:
        raise Conflict(f"namespace {name!r} exists already")
    namespace = Namespace(name=name, created_ms=now_ms())
    session.add(namespace)
    await session.flush()
    return await add_key(session, namespace, subject=name)


async def add_key(session: AsyncSession, namespace: Namespace, subject: str) -> str:
    """Give a namespace a new key; return the `uuid:key` credential."""
    key_uuid, key = str(uuid.uuid4()), secrets.token_hex(32)
    session.add(AuthKey(uuid=key_uuid, namespace_id=namespace.id, subject=subject,
                        key_hash=hash_key(key), created_ms=now_ms()))
    await session.flush()
    return f"{key_uuid}:{key}"


async def rotate_key(session: AsyncSession, name: str) -> str:
    """Replace every key of the namespace by one new key; return its `uuid:key` credential."""
    namespace = await find_namespace(session, name)
    if namespace is None:
        raise NotFound(f"namespace {name!r} does not exist")
    await session.execute(delete(AuthKey).where(AuthKey.namespace_id == namespace.id))
    return await add_key(session, namespace, subject=name)


def check_namespace_name(name: str) -> None:
    """Refuse a name OpenWhisk would refuse (BadRequest naming the rule)."""
    if len(name) > NAME_MAX_LENGTH or not ENTITY_NAME.match(name):
        raise BadRequest(f"{name!r} is not a valid namespace name: it must start with a "
                         "letter, digit or underscore, continue with those, spaces, '@', "
                         f"'.' or '-', not end with a space, and be at most {NAME_MAX_LENGTH} "
                         "characters long")


async def delete_namespace(session: AsyncSession, name: str) -> tuple[int, set[str]]:
    """Delete a namespace, its keys, actions, packages, activation records and profiles (NotFound if
    absent); return how many actions it had and the artifact digests left unreferenced.

    Its usage records stay: they are the operator's bill (the admin usage report).
    """
    namespace = await find_namespace(session, name)
    if namespace is None:
        raise NotFound(f"namespace {name!r} does not exist")
    names = [action_rows.qualified_name(name, row) for row in await session.scalars(
        select(Action).where(Action.namespace_id == namespace.id))]
    orphaned: set[str] = set()
    await delete_namespace_triggers(session, namespace.id)
    for action_name in names:
        _, digests = await action_rows.delete_action(session, namespace.id, action_name)
        orphaned |= {digest for digest in digests if await drop_reference(session, digest)}
    await session.execute(delete(Package).where(Package.namespace_id == namespace.id))
    for model in (Activation, PendingInvocation, ArtifactProfile):
        await session.execute(delete(model).where(model.namespace == name))
    await session.execute(delete(AuthKey).where(AuthKey.namespace_id == namespace.id))
    await session.delete(namespace)
    await session.flush()
    return len(names), orphaned


async def find_namespace(session: AsyncSession, name: str) -> Namespace | None:
    """The namespace called `name`, if any."""
    return await session.scalar(select(Namespace).where(Namespace.name == name))


async def list_namespaces(session: AsyncSession) -> list[Namespace]:
    """Every namespace, by name."""
    return list(await session.scalars(select(Namespace).order_by(Namespace.name)))


async def authenticate(session: AsyncSession, credential: str) -> Identity:
    """Check a `uuid:key` credential; raise Unauthorized when it does not match."""
    key_uuid, _, key = credential.partition(":")
    row = await session.get(AuthKey, key_uuid) if key_uuid and key else None
    _check_key(row, key)
    assert row is not None
    namespace = await session.get(Namespace, row.namespace_id)
    assert namespace is not None
    return _identity(row, namespace)


async def authenticate_with_action(session: AsyncSession, credential: str,
                                   name: QualifiedName) -> tuple[Identity, Action | None]:
    """`authenticate`, and the action `name` of the caller's namespace (None when there is
    none), read in one query: the invoke path's lookups cost one round trip, and nothing
    is cached, so an update, a deletion or a rotated key counts at once, on every
    controller."""
    key_uuid, _, key = credential.partition(":")
    found = None
    if key_uuid and key:
        found = (await session.execute(
            select(AuthKey, Namespace, Action)
            .join(Namespace, Namespace.id == AuthKey.namespace_id)
            .outerjoin(Action, and_(Action.namespace_id == Namespace.id,
                                    Action.package == action_rows.package_column(name),
                                    Action.name == name.name))
            .where(AuthKey.uuid == key_uuid))).first()
    _check_key(found[0] if found is not None else None, key)
    assert found is not None
    row, namespace, action = found
    return _identity(row, namespace), action


def _check_key(row: AuthKey | None, key: str) -> None:
    """Raise Unauthorized unless the key matches the stored one."""
    # Hash even when the uuid is unknown, so the answer takes as long either way.
    presented = hash_key(key)
    stored = row.key_hash if row is not None else hash_key(secrets.token_hex(32))
    if row is None or not hmac.compare_digest(presented, stored):
        raise Unauthorized("The supplied authentication is invalid")


def _identity(row: AuthKey, namespace: Namespace) -> Identity:
    return Identity(subject=row.subject, namespace=namespace.name,
                    namespace_id=namespace.id, key_uuid=row.uuid)
