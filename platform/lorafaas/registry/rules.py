"""Rules in the registry: create (linked to their trigger, active), update (merging what the
PUT leaves out, the link moving with the trigger), status changes, read, list, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.errors import Conflict, NotFound
from lorafaas.registry.actions import FIRST_VERSION, next_version
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Rule, Trigger
from lorafaas.registry.triggers import EXISTS, NOT_FOUND, check_name_free

ACTIVE, INACTIVE = "active", "inactive"


@dataclass(frozen=True)
class RuleTargets:
    """A rule's trigger (found) and its action's qualified name (checked to exist)."""

    trigger: Trigger
    trigger_path: str
    action_path: str
    action_name: str


@dataclass(frozen=True)
class RulePut:
    """A rule PUT's other fields; None is a field the PUT left out."""

    annotations: list[dict[str, Any]] | None = None
    version: str | None = None
    publish: bool | None = None


def rule_status(rule: Rule) -> str:
    """What GET shows: the rule's status while linked to its trigger, else inactive."""
    return rule.status if rule.trigger_id is not None else INACTIVE


async def find_rule(session: AsyncSession, namespace_id: int, name: str) -> Rule | None:
    """The rule `name` of a namespace, if any."""
    return await session.scalar(select(Rule).where(Rule.namespace_id == namespace_id,
                                                   Rule.name == name))


async def get_rule(session: AsyncSession, namespace_id: int, name: str) -> Rule:
    """The rule, or NotFound."""
    rule = await find_rule(session, namespace_id, name)
    if rule is None:
        raise NotFound(NOT_FOUND)
    return rule


async def create_rule(session: AsyncSession, namespace_id: int, name: str,
                      targets: RuleTargets, put: RulePut) -> Rule:
    """A new rule, linked to its trigger and active (OpenWhisk's create)."""
    await check_name_free(session, namespace_id, name, Rule)
    rule = Rule(namespace_id=namespace_id, name=name, version=put.version or FIRST_VERSION,
                annotations=put.annotations or [], publish=bool(put.publish), status=ACTIVE)
    _target(rule, targets)
    rule.updated_ms = now_ms()
    session.add(rule)
    await session.flush()
    return rule


async def update_rule(rule: Rule, targets: RuleTargets, put: RulePut,
                      session: AsyncSession) -> Rule:
    """Update in place: the status is kept, and the link follows the (new) trigger."""
    status = rule_status(rule)
    _target(rule, targets)
    rule.status = status
    rule.version = put.version or next_version(rule.version)
    if put.annotations is not None:
        rule.annotations = put.annotations
    if put.publish is not None:
        rule.publish = put.publish
    rule.updated_ms = now_ms()
    await session.flush()
    return rule


def _target(rule: Rule, targets: RuleTargets) -> None:
    rule.trigger_id = targets.trigger.id
    rule.trigger_path, rule.trigger_name = targets.trigger_path, targets.trigger.name
    rule.action_path, rule.action_name = targets.action_path, targets.action_name


async def set_status(session: AsyncSession, rule: Rule, trigger: Trigger, status: str) -> None:
    """Link the rule to its trigger with `status` (enable or disable)."""
    rule.trigger_id, rule.status = trigger.id, status
    await session.flush()


def put_conflict(rule: Rule | None, overwrite: bool) -> None:
    """409 when the rule exists and the PUT does not overwrite."""
    if rule is not None and not overwrite:
        raise Conflict(EXISTS)


async def delete_rule(session: AsyncSession, namespace_id: int, name: str) -> Rule:
    """Delete the rule (NotFound if absent)."""
    rule = await get_rule(session, namespace_id, name)
    await session.delete(rule)
    await session.flush()
    return rule


async def list_rules(session: AsyncSession, namespace_id: int, limit: int,
                     skip: int) -> list[Rule]:
    """Rules of a namespace, most recently updated first."""
    query = (select(Rule).where(Rule.namespace_id == namespace_id)
             .order_by(Rule.updated_ms.desc(), Rule.name).limit(limit).offset(skip))
    return list(await session.scalars(query))


async def count_rules(session: AsyncSession, namespace_id: int, skip: int) -> int:
    """How many rules the namespace has, past the first `skip`."""
    total = await session.scalar(select(func.count()).select_from(Rule)
                                 .where(Rule.namespace_id == namespace_id))
    return max(0, int(total or 0) - skip)
