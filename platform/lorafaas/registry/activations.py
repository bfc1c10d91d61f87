"""Activation records: write one, read one, list a namespace's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import NotFound
from lorafaas.registry.models import Activation


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
