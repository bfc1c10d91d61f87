"""The console's triggers page: each trigger's feed, rules and last firing, and the rules."""

from __future__ import annotations

from aiohttp import web

from lorafaas.console.data import activations_since
from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import RuleRow, TriggerRow, TriggersPage
from lorafaas.console.render import render_page
from lorafaas.console.stats import when
from lorafaas.controller.appkeys import sessions_key
from lorafaas.controller.trigger_protocol import action_ref
from lorafaas.controller.trigger_service import alarm_spec
from lorafaas.registry import alarms as alarm_rows
from lorafaas.registry import rules as rule_rows
from lorafaas.registry import triggers as trigger_rows
from lorafaas.registry.models import Alarm, Rule

MAX_ROWS = 200


def feed_text(alarm: Alarm | None) -> str | None:
    """An alarm's feed and schedule, as the page shows it."""
    if alarm is None:
        return None
    spec = alarm_spec(alarm)
    schedule = spec.cron if spec.minutes is None else f"every {spec.minutes} min"
    return f"/{spec.feed} ({schedule})"


def rule_text(rule: Rule) -> str:
    """`rule → action (status)`."""
    return f"{rule.name} → {action_ref(rule).as_string()} ({rule.status})"


async def triggers_page(request: web.Request) -> web.Response:
    """The signed-in namespace's triggers and rules."""
    identity = request[console_identity_key]
    rows = []
    async with request.app[sessions_key]() as session:
        triggers = await trigger_rows.list_triggers(session, identity.namespace_id, MAX_ROWS, 0)
        for trigger in triggers:
            linked = await trigger_rows.linked_rules(session, trigger.id)
            alarm = await alarm_rows.find_alarm(session, trigger.id)
            rows.append((trigger, linked, alarm))
        rules = await rule_rows.list_rules(session, identity.namespace_id, MAX_ROWS, 0)
    trigger_views = []
    for trigger, linked, alarm in rows:
        last = await activations_since(request, identity, 0, trigger.name, limit=1)
        trigger_views.append(TriggerRow(trigger.name, trigger.version, feed_text(alarm),
                                        [rule_text(rule) for rule in linked],
                                        when(last[0].start_ms) if last else None))
    rule_views = [RuleRow(rule.name, f"/{rule.trigger_path}/{rule.trigger_name}",
                          f"/{action_ref(rule).as_string()}", rule_rows.rule_status(rule))
                  for rule in rules]
    return await render_page(request, TriggersPage(trigger_views, rule_views))
