"""Activation records: write one, read one, list a namespace's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import NotFound
from lorafaas.registry.models import Activation

PATH_PAGE = 500  # records read at once when a name filter also names a package


def activation_json(row: Activation) -> dict[str, Any]:
    """The record as OpenWhisk's activation JSON."""
    return {
        "activationId": row.activation_id,
        "namespace": row.namespace,
        "name": row.name,
        "version": row.version,
        "subject": row.subject,
        "start": row.start_ms,
        "end": row.end_ms,
        "duration": row.duration_ms if row.duration_ms is not None else
        row.end_ms - row.start_ms,
        "statusCode": row.status_code,
        "response": row.response,
        "logs": row.logs,
        "annotations": row.annotations,
        "publish": False,
        # OpenWhisk's: a sequence's component names the sequence activation it ran in.
        **({"cause": row.cause} if row.cause is not None else {}),
    }


async def get_activation(session: AsyncSession, namespace: str, activation_id: str) -> Activation:
    """The activation, or NotFound (also when it belongs to another namespace)."""
    row = await session.get(Activation, activation_id)
    if row is None or row.namespace != namespace:
        raise NotFound("The requested resource does not exist.")
    return row


async def list_activations(session: AsyncSession, namespace: str, name: str | None,
                           limit: int, skip: int, *, since: int | None = None,
                           upto: int | None = None) -> list[Activation]:
    """A namespace's activations, newest first; `since`/`upto` bound the start (ms, inclusive)."""
    query = _matching(select(Activation), namespace, name, since, upto)
    query = query.order_by(Activation.start_ms.desc()).limit(limit).offset(skip)
    return list(await session.scalars(query))


async def count_activations(session: AsyncSession, namespace: str, name: str | None,
                            skip: int, *, since: int | None = None,
                            upto: int | None = None) -> int:
    """How many activations `list_activations` would list past `skip`, without a limit."""
    query = _matching(select(func.count()).select_from(Activation), namespace, name, since,
                      upto)
    return max(0, int(await session.scalar(query) or 0) - skip)


async def list_by_path(session: AsyncSession, namespace: str, path: str | None, limit: int,
                       skip: int, *, since: int | None = None,
                       upto: int | None = None) -> list[Activation]:
    """As `list_activations`, with OpenWhisk's `name` filter: `pkg/action` lists a package's
    action (reached directly or through a binding), `action` one of the default package."""
    if not path:
        return await list_activations(session, namespace, None, limit, skip, since=since,
                                      upto=upto)
    package, name = _split_path(path)
    query = _matching(select(Activation), namespace, name, since, upto).order_by(
        Activation.start_ms.desc())
    kept: list[Activation] = []
    matched = offset = 0
    # The package is only in the record's `path` annotation: rows of the name are read a
    # page at a time until enough of them match.
    while True:
        rows = list(await session.scalars(query.limit(PATH_PAGE).offset(offset)))
        for row in (row for row in rows if package_of(row.annotations) == package):
            if matched >= skip:
                kept.append(row)
            matched += 1
            if len(kept) == limit:
                return kept
        if len(rows) < PATH_PAGE:
            return kept
        offset += PATH_PAGE


async def count_by_path(session: AsyncSession, namespace: str, path: str | None, skip: int,
                        *, since: int | None = None, upto: int | None = None) -> int:
    """How many activations `list_by_path` would list past `skip`, without a limit."""
    if not path:
        return await count_activations(session, namespace, None, skip, since=since, upto=upto)
    package, name = _split_path(path)
    query = _matching(select(Activation.annotations), namespace, name, since, upto)
    count = sum(1 for annotations in await session.scalars(query)
                if package_of(annotations) == package)
    return max(0, count - skip)


def _split_path(path: str) -> tuple[str | None, str]:
    package, _, name = path.strip("/").rpartition("/")
    return package or None, name


def package_of(annotations: list[Any]) -> str | None:
    """The package of the action a record ran, from its `path` annotation (`ns/pkg/name`)."""
    path = next((a.get("value") for a in annotations
                 if isinstance(a, dict) and a.get("key") == "path"), None)
    parts = path.split("/") if isinstance(path, str) else []
    return parts[1] if len(parts) == 3 else None


def _matching(query: Select[Any], namespace: str, name: str | None, since: int | None,
              upto: int | None) -> Select[Any]:
    query = query.where(Activation.namespace == namespace)
    if name:
        query = query.where(Activation.name == name)
    if since is not None:
        query = query.where(Activation.start_ms >= since)
    if upto is not None:
        query = query.where(Activation.start_ms <= upto)
    return query
