"""The triggers' and rules' services, and the alarm loop, as one cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from lorafaas.controller.alarm_scheduler import AlarmScheduler
from lorafaas.controller.appkeys import invocations_key, rules_key, sessions_key, triggers_key
from lorafaas.controller.rule_service import RuleService
from lorafaas.controller.trigger_service import TriggerService


async def triggers_and_alarms(app: web.Application) -> AsyncIterator[None]:
    """Set up the services; run the alarm loop until the app stops (before the platform)."""
    triggers = TriggerService(app[sessions_key], app[invocations_key])
    app[triggers_key] = triggers
    app[rules_key] = RuleService(app[sessions_key])
    async with AlarmScheduler(app[sessions_key], triggers.fire_alarm).running():
        yield
