"""Actions in the registry: create, update with version bump, read, list, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import Conflict, NotFound
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Action, Namespace

FIRST_VERSION = "0.0.1"


@dataclass(frozen=True)
class ActionSpec:
    """The validated content of a PUT: everything an action row holds but its identity."""

    exec_kind: str
    artifact_digest: str
    parameters: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    limits: dict[str, Any]
    publish: bool


def next_version(version: str) -> str:
    """OpenWhisk's semantic version bump on update: 0.0.1 -> 0.0.2."""
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


async def find_action(session: AsyncSession, namespace_id: int, name: str) -> Action | None:
    """The action `name` of a namespace, if any."""
    return await session.scalar(select(Action).where(Action.namespace_id == namespace_id,
                                                     Action.name == name))


async def get_action(session: AsyncSession, namespace_id: int, name: str) -> Action:
    """The action, or NotFound."""
    action = await find_action(session, namespace_id, name)
    if action is None:
        raise NotFound("The requested resource does not exist.")
    return action


async def put_action(session: AsyncSession, namespace: Namespace, name: str, spec: ActionSpec,
                     overwrite: bool) -> tuple[Action, str | None]:
    """Create or update an action; return it and the artifact digest it stopped using."""
    action = await find_action(session, namespace.id, name)
    if action is not None and not overwrite:
        raise Conflict("resource already exists")
    if action is None:
        action = Action(namespace_id=namespace.id, name=name, version=FIRST_VERSION)
        session.add(action)
        previous_digest = None
    else:
        action.version = next_version(action.version)
        previous_digest = action.artifact_digest
    action.exec_kind = spec.exec_kind
    action.artifact_digest = spec.artifact_digest
    action.parameters = spec.parameters
    action.annotations = spec.annotations
    action.limits = spec.limits
    action.publish = spec.publish
    action.updated_ms = now_ms()
    await session.flush()
    return action, previous_digest


async def delete_action(session: AsyncSession, namespace_id: int, name: str) -> Action:
    """Delete the action (NotFound if absent); the caller drops its artifact reference."""
    action = await get_action(session, namespace_id, name)
    await session.delete(action)
    await session.flush()
    return action


async def list_actions(session: AsyncSession, namespace_id: int, limit: int,
                       skip: int) -> list[Action]:
    """Actions of a namespace, most recently updated first."""
    query = (select(Action).where(Action.namespace_id == namespace_id)
             .order_by(Action.updated_ms.desc(), Action.name).limit(limit).offset(skip))
    return list(await session.scalars(query))
