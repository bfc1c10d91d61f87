"""Actions in the registry: create, update with version bump, read, list, delete.

Every create and update adds a version row, and each version row holds one reference to
its artifact (the caller adds it, see `artifacts.add_reference`): an update keeps the old
version's artifact until that version goes. Only the last `history` versions of an action
are kept; the older ones are pruned, and the caller drops the references they held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import Conflict, NotFound
from lorafaas.names import QualifiedName
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Action, ActionVersion, Namespace

FIRST_VERSION = "0.0.1"


@dataclass(frozen=True)
class ActionSpec:
    """The validated content of a PUT: everything an action row holds but its identity."""

    exec_kind: str
    artifact_digest: str | None  # None: a sequence, which holds no code
    parameters: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    limits: dict[str, Any]
    publish: bool
    components: list[str] | None = None  # a sequence's, fully qualified


def next_version(version: str) -> str:
    """OpenWhisk's semantic version bump on update: 0.0.1 -> 0.0.2."""
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def qualified_name(namespace: str, action: Action) -> QualifiedName:
    """The action's name, in its namespace and package."""
    return QualifiedName(namespace, action.package or None, action.name)


def package_column(name: QualifiedName) -> str:
    """The `package` column's value of an action called `name` ('': the default package)."""
    return name.package or ""


async def find_action(session: AsyncSession, namespace_id: int,
                      name: QualifiedName) -> Action | None:
    """The action `name` (its package and name) of a namespace, if any."""
    return await session.scalar(select(Action).where(Action.namespace_id == namespace_id,
                                                     Action.package == package_column(name),
                                                     Action.name == name.name))


async def get_action(session: AsyncSession, namespace_id: int, name: QualifiedName) -> Action:
    """The action, or NotFound."""
    action = await find_action(session, namespace_id, name)
    if action is None:
        raise NotFound("The requested resource does not exist.")
    return action


async def put_action(session: AsyncSession, namespace: Namespace, name: QualifiedName,
                     spec: ActionSpec,
                     overwrite: bool, history: int) -> tuple[Action, list[str]]:
    """Create or update an action; return it and the artifact digests of the pruned versions
    (a sequence's versions hold none)."""
    action = await find_action(session, namespace.id, name)
    if action is not None and not overwrite:
        raise Conflict("resource already exists (PUT with ?overwrite=true replaces it)")
    if action is None:
        action = Action(namespace_id=namespace.id, package=package_column(name), name=name.name,
                        version=FIRST_VERSION)
        session.add(action)
    else:
        action.version = next_version(action.version)
    action.exec_kind = spec.exec_kind
    action.artifact_digest = spec.artifact_digest
    action.components = spec.components
    action.parameters = spec.parameters
    action.annotations = spec.annotations
    action.limits = spec.limits
    action.publish = spec.publish
    action.updated_ms = now_ms()
    await session.flush()
    session.add(ActionVersion(action_id=action.id, version=action.version,
                              artifact_digest=spec.artifact_digest, exec_kind=spec.exec_kind,
                              created_ms=action.updated_ms))
    await session.flush()
    return action, await _prune_versions(session, action.id, history)


async def _prune_versions(session: AsyncSession, action_id: int, history: int) -> list[str]:
    # One DELETE ... RETURNING: a concurrent update pruning the same rows cannot make both
    # transactions drop their references.
    older = (select(ActionVersion.id).where(ActionVersion.action_id == action_id)
             .order_by(ActionVersion.id.desc()).offset(history))
    return [digest for digest in await session.scalars(
        delete(ActionVersion).where(ActionVersion.id.in_(older.scalar_subquery()))
        .returning(ActionVersion.artifact_digest)) if digest is not None]


async def delete_action(session: AsyncSession, namespace_id: int,
                        name: QualifiedName) -> tuple[Action, list[str]]:
    """Delete the action and its versions (NotFound if absent); return it and the artifact
    digests its versions used, one per version: the caller drops those references."""
    action = await get_action(session, namespace_id, name)
    digests = [digest for digest in await session.scalars(
        delete(ActionVersion).where(ActionVersion.action_id == action.id)
        .returning(ActionVersion.artifact_digest)) if digest is not None]
    await session.delete(action)
    await session.flush()
    return action, digests


async def list_versions(session: AsyncSession, action_id: int) -> list[ActionVersion]:
    """The action's kept versions, newest first."""
    return list(await session.scalars(select(ActionVersion)
                                      .where(ActionVersion.action_id == action_id)
                                      .order_by(ActionVersion.id.desc())))


async def list_actions(session: AsyncSession, namespace_id: int, limit: int, skip: int,
                       package: str | None = None) -> list[Action]:
    """Actions of a namespace (of one package when `package` is given, '' the default one),
    most recently updated first."""
    query = select(Action).where(Action.namespace_id == namespace_id)
    if package is not None:
        query = query.where(Action.package == package)
    query = (query.order_by(Action.updated_ms.desc(), Action.package, Action.name)
             .limit(limit).offset(skip))
    return list(await session.scalars(query))


async def count_actions(session: AsyncSession, namespace_id: int, skip: int) -> int:
    """How many actions `list_actions` would list past `skip`, without a limit."""
    total = await session.scalar(select(func.count()).select_from(Action)
                                 .where(Action.namespace_id == namespace_id))
    return max(0, int(total or 0) - skip)
