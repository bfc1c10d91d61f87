"""Triggers in the registry: create, update (merging what the PUT leaves out), read, list,
count, delete (which unlinks their rules and ends their alarm).

OpenWhisk names every entity of a namespace in one space: a trigger cannot take the name of
an action or a rule of its namespace (`check_name_free`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import Conflict, NotFound
from lorafaas.registry.actions import FIRST_VERSION, next_version
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Action, Alarm, AlarmTick, Rule, Trigger

NOT_FOUND = "The requested resource does not exist."
EXISTS = "resource already exists (PUT with ?overwrite=true updates it)"
OTHER_COLLECTION = "Resource by this name exists but is not in this collection."


@dataclass(frozen=True)
class TriggerPut:
    """A trigger PUT's fields; None is a field the PUT left out (an update keeps it)."""

    parameters: list[dict[str, Any]] | None = None
    annotations: list[dict[str, Any]] | None = None
    limits: dict[str, Any] | None = None
    version: str | None = None
    publish: bool | None = None


async def check_name_free(session: AsyncSession, namespace_id: int, name: str,
                          collection: type[Trigger | Rule]) -> None:
    """409 when an entity of another collection of the namespace has the name."""
    for model in (Action, Trigger, Rule):
        if model is collection:
            continue
        found = await session.scalar(select(model.id).where(model.namespace_id == namespace_id,
                                                            model.name == name))
        if found is not None:
            raise Conflict(OTHER_COLLECTION)


async def find_trigger(session: AsyncSession, namespace_id: int, name: str) -> Trigger | None:
    """The trigger `name` of a namespace, if any."""
    return await session.scalar(select(Trigger).where(Trigger.namespace_id == namespace_id,
                                                      Trigger.name == name))


async def get_trigger(session: AsyncSession, namespace_id: int, name: str) -> Trigger:
    """The trigger, or NotFound."""
    trigger = await find_trigger(session, namespace_id, name)
    if trigger is None:
        raise NotFound(NOT_FOUND)
    return trigger


async def put_trigger(session: AsyncSession, namespace_id: int, name: str, put: TriggerPut,
                      overwrite: bool) -> tuple[Trigger, bool]:
    """Create the trigger, or with `overwrite` update it; return it and whether it is new."""
    trigger = await find_trigger(session, namespace_id, name)
    if trigger is not None and not overwrite:
        raise Conflict(EXISTS)
    created = trigger is None
    if trigger is None:
        await check_name_free(session, namespace_id, name, Trigger)
        trigger = Trigger(namespace_id=namespace_id, name=name,
                          version=put.version or FIRST_VERSION, parameters=[], annotations=[],
                          limits={}, publish=False)
        session.add(trigger)
    else:
        trigger.version = put.version or next_version(trigger.version)
    if put.parameters is not None:
        trigger.parameters = put.parameters
    if put.annotations is not None:
        trigger.annotations = put.annotations
    if put.limits is not None:
        trigger.limits = put.limits
    if put.publish is not None:
        trigger.publish = put.publish
    trigger.updated_ms = now_ms()
    await session.flush()
    return trigger, created


async def delete_trigger(session: AsyncSession, namespace_id: int, name: str) -> Trigger:
    """Delete the trigger (NotFound if absent), its alarm and its ticks; its rules stay,
    unlinked (they read as inactive), as OpenWhisk leaves them."""
    trigger = await get_trigger(session, namespace_id, name)
    await delete_trigger_rows(session, [trigger.id])
    await session.delete(trigger)
    await session.flush()
    return trigger


async def delete_trigger_rows(session: AsyncSession, trigger_ids: list[int]) -> None:
    """What hangs on the triggers: rule links, alarms and ticks (SQLite enforces no
    foreign keys here, so nothing is left to its cascades)."""
    await session.execute(update(Rule).where(Rule.trigger_id.in_(trigger_ids))
                          .values(trigger_id=None))
    await session.execute(delete(AlarmTick).where(AlarmTick.trigger_id.in_(trigger_ids)))
    await session.execute(delete(Alarm).where(Alarm.trigger_id.in_(trigger_ids)))


async def delete_namespace_triggers(session: AsyncSession, namespace_id: int) -> None:
    """Delete a namespace's triggers and rules with all that hangs on them."""
    ids = list(await session.scalars(select(Trigger.id)
                                     .where(Trigger.namespace_id == namespace_id)))
    await delete_trigger_rows(session, ids)
    await session.execute(delete(Rule).where(Rule.namespace_id == namespace_id))
    await session.execute(delete(Trigger).where(Trigger.namespace_id == namespace_id))


async def list_triggers(session: AsyncSession, namespace_id: int, limit: int,
                        skip: int) -> list[Trigger]:
    """Triggers of a namespace, most recently updated first."""
    query = (select(Trigger).where(Trigger.namespace_id == namespace_id)
             .order_by(Trigger.updated_ms.desc(), Trigger.name).limit(limit).offset(skip))
    return list(await session.scalars(query))


async def count_triggers(session: AsyncSession, namespace_id: int, skip: int) -> int:
    """How many triggers the namespace has, past the first `skip` (OpenWhisk's count)."""
    total = await session.scalar(select(func.count()).select_from(Trigger)
                                 .where(Trigger.namespace_id == namespace_id))
    return max(0, int(total or 0) - skip)


async def linked_rules(session: AsyncSession, trigger_id: int) -> list[Rule]:
    """The rules linked to a trigger (active or not), by name."""
    return list(await session.scalars(select(Rule).where(Rule.trigger_id == trigger_id)
                                      .order_by(Rule.name)))
