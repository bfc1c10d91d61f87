"""Triggers and rules in the registry (SQLite, then PostgreSQL): one name per entity of a
namespace, a deleted trigger unlinks its rules, a deleted namespace leaves none of them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.errors import Conflict
from lorafaas.registry import alarms as alarm_rows
from lorafaas.registry import rules as rule_rows
from lorafaas.registry import triggers as trigger_rows
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.models import Alarm, AlarmTick, Namespace, Rule, Trigger
from lorafaas.registry.namespaces import create_namespace, delete_namespace, find_namespace
from lorafaas.registry.rules import RulePut, RuleTargets
from lorafaas.registry.triggers import TriggerPut


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on the test's registry."""
    engine = make_engine(database_url)
    yield make_sessions(engine)
    await engine.dispose()


async def _namespace(session: AsyncSession, name: str) -> Namespace:
    await create_namespace(session, name)
    namespace = await find_namespace(session, name)
    assert namespace is not None
    return namespace


async def _trigger_and_rule(session: AsyncSession, namespace: Namespace) -> tuple[Trigger, Rule]:
    trigger, created = await trigger_rows.put_trigger(
        session, namespace.id, "t", TriggerPut(parameters=[{"key": "a", "value": 1}]), False)
    assert created
    rule = await rule_rows.create_rule(session, namespace.id, "r",
                                       RuleTargets(trigger, namespace.name, namespace.name, "p"),
                                       RulePut())
    return trigger, rule


async def test_updates_merge_and_names_are_one_per_namespace(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        namespace = await _namespace(session, "alice")
        trigger, _ = await _trigger_and_rule(session, namespace)
        updated, created = await trigger_rows.put_trigger(
            session, namespace.id, "t", TriggerPut(annotations=[{"key": "b", "value": 2}]),
            True)
        assert not created and updated.version == "0.0.2"
        assert updated.parameters == [{"key": "a", "value": 1}]  # kept: the PUT left it out
        assert [r.name for r in await trigger_rows.linked_rules(session, trigger.id)] == ["r"]
        with pytest.raises(Conflict, match="not in this collection"):
            await trigger_rows.put_trigger(session, namespace.id, "r", TriggerPut(), False)
        with pytest.raises(Conflict, match="already exists"):
            await trigger_rows.put_trigger(session, namespace.id, "t", TriggerPut(), False)


async def test_a_deleted_trigger_unlinks_its_rules_and_ends_its_alarm(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        namespace = await _namespace(session, "alice")
        trigger, _ = await _trigger_and_rule(session, namespace)
        session.add(Alarm(trigger_id=trigger.id, namespace="alice", subject="alice",
                          feed="whisk.system/alarms/alarm", cron="* * * * *", minutes=None,
                          timezone=None, payload={}, start_ms=None, stop_ms=None,
                          created_ms=0))
        await session.flush()
        assert await alarm_rows.claim_tick(session, trigger.id, 60_000, "one")
        assert not await alarm_rows.claim_tick(session, trigger.id, 60_000, "two")
        await trigger_rows.delete_trigger(session, namespace.id, "t")
    async with sessions() as session:
        rule = await rule_rows.get_rule(session, namespace.id, "r")
        assert rule.trigger_id is None and rule_rows.rule_status(rule) == "inactive"
        for model in (Alarm, AlarmTick):
            assert await session.scalar(select(func.count()).select_from(model)) == 0


async def test_a_deleted_namespace_leaves_no_trigger_or_rule(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session, session.begin():
        await _trigger_and_rule(session, await _namespace(session, "alice"))
        await _trigger_and_rule(session, await _namespace(session, "bob"))
    async with sessions() as session, session.begin():
        await delete_namespace(session, "alice")
    async with sessions() as session:
        for model in (Trigger, Rule):
            assert await session.scalar(select(func.count()).select_from(model)) == 1
