"""Triggers as OpenWhisk runs them: PUT (with an alarm feed), DELETE, and firing.

Firing merges the trigger's parameters with the payload, starts every active linked rule's
action non-blocking through the invocation service, and stores the trigger's own record:
its result is the payload, its logs one JSON line per linked rule (OpenWhisk's
`RuleActivationResult`: rule, action, statusCode, success, and activationId or error). A
trigger with no active rule is not recorded (the caller answers 204).
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller import alarm_feed
from lorafaas.controller.entity_refs import find_rule_action, parse_ref
from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.protocol import parameter_values
from lorafaas.controller.trigger_protocol import (
    FEED_ANNOTATION,
    action_ref,
    annotation,
    trigger_json,
)
from lorafaas.errors import BadRequest, LoraFaasError, NotFound
from lorafaas.registry import alarms as alarm_rows
from lorafaas.registry import triggers as trigger_rows
from lorafaas.registry.clock import now_ms
from lorafaas.registry.models import Activation, Alarm, Rule, Trigger
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.rules import ACTIVE
from lorafaas.registry.triggers import TriggerPut

logger = logging.getLogger(__name__)
# OpenWhisk's ActivationResponse status codes.
SUCCESS, APPLICATION_ERROR, WHISK_ERROR = 0, 1, 3


@dataclass(frozen=True)
class RuleResult:
    """What one rule's firing did (a line of the trigger's record's logs)."""

    rule: str
    action: str
    status_code: int
    activation_id: str | None = None
    error: str | None = None

    def log_line(self) -> str:
        """OpenWhisk's compact JSON line of a rule activation result."""
        line: dict[str, Any] = {"rule": self.rule, "action": self.action,
                                "statusCode": self.status_code,
                                "success": self.status_code == SUCCESS}
        if self.activation_id is not None:
            line["activationId"] = self.activation_id
        else:
            line["error"] = self.error
        return json.dumps(line, separators=(",", ":"))


class TriggerService:
    """Creates, deletes and fires triggers; runs their alarms' lifecycle."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 invocations: InvocationService) -> None:
        self.sessions = sessions
        self.invocations = invocations

    async def put(self, identity: Identity, name: str, put: TriggerPut,
                  overwrite: bool) -> dict[str, Any]:
        """Create or update the trigger and, for an alarm feed, its alarm (CREATE, UPDATE, or
        DELETE when the feed annotation goes), in one transaction."""
        params = parameter_values(put.parameters or [])
        feed_params = {k: params.pop(k) for k in alarm_feed.FEED_PARAMETERS if k in params}
        async with self.sessions() as session, session.begin():
            existing = await trigger_rows.find_trigger(session, identity.namespace_id, name)
            old_alarm = None if existing is None else await alarm_rows.find_alarm(
                session, existing.id)
            annotations = put.annotations if put.annotations is not None else (
                existing.annotations if existing is not None else [])
            feed = alarm_feed.feed_name(annotation(annotations, FEED_ANNOTATION))
            if feed is not None and put.parameters is not None:
                put = TriggerPut(parameters=[{"key": k, "value": v} for k, v in params.items()],
                                 annotations=put.annotations, limits=put.limits,
                                 version=put.version, publish=put.publish)
            trigger, _ = await trigger_rows.put_trigger(session, identity.namespace_id, name,
                                                        put, overwrite)
            await self._alarm_lifecycle(session, identity, trigger, feed, feed_params,
                                        old_alarm)
            rules = await trigger_rows.linked_rules(session, trigger.id)
            return trigger_json(trigger, identity.namespace, rules)

    async def _alarm_lifecycle(self, session: AsyncSession, identity: Identity,
                               trigger: Trigger, feed: str | None, params: dict[str, Any],
                               old: Alarm | None) -> None:
        # A PUT with the feed's parameters configures it; one without them leaves it to the
        # feed action's CREATE (`feed_lifecycle`), as `wsk trigger create --feed` does.
        if old is not None and old.feed != feed:  # the feed went, or changed: DELETE
            await alarm_rows.delete_alarm(session, trigger.id)
            old = None
        if feed is None or not params:
            return
        if old is None:
            spec = alarm_feed.parse_alarm(feed, params, now_ms())  # CREATE
        else:
            spec = alarm_feed.update_alarm(alarm_spec(old), params, now_ms())  # UPDATE
        await _store_alarm(session, identity, trigger, spec)

    async def feed_lifecycle(self, identity: Identity, feed: str,
                             params: dict[str, Any]) -> dict[str, Any]:
        """The alarms feed action: `lifecycleEvent` CREATE, READ, UPDATE or DELETE of the
        alarm of `triggerName`; its result, or a BadRequest with the feed's message."""
        event = params.get("lifecycleEvent")
        if event not in ("CREATE", "READ", "UPDATE", "DELETE"):
            raise BadRequest("unsupported lifecycleEvent", param="lifecycleEvent")
        if not params.get("triggerName"):
            raise BadRequest("no trigger name parameter was provided", param="triggerName")
        ref = parse_ref(params["triggerName"], identity.namespace, "triggerName")
        async with self.sessions() as session, session.begin():
            trigger = None if ref.namespace != identity.namespace else \
                await trigger_rows.find_trigger(session, identity.namespace_id, ref.name)
            if trigger is None:
                raise BadRequest(f"trigger {ref.with_slash()} does not exist or is not "
                                 "the caller's", param="triggerName")
            old = await alarm_rows.find_alarm(session, trigger.id)
            if event == "CREATE":
                await _store_alarm(session, identity, trigger,
                                   alarm_feed.parse_alarm(feed, params, now_ms()))
                return {"status": "success"}
            if old is None:
                raise BadRequest(f"trigger {ref.with_slash()} has no alarm",
                                 param="triggerName")
            if event == "READ":
                return {"config": {"name": trigger.name, "namespace": identity.namespace,
                                   **alarm_feed.alarm_config(alarm_spec(old))},
                        "status": {"active": True, "dateChanged": old.created_ms}}
            if event == "DELETE":
                await alarm_rows.delete_alarm(session, trigger.id)
                return {"status": "success"}
            if not any(key in params for key in alarm_feed.FEED_PARAMETERS):
                raise BadRequest("no updatable parameters were specified")
            await _store_alarm(session, identity, trigger,
                               alarm_feed.update_alarm(alarm_spec(old), params, now_ms()))
            return {"status": "success"}

    async def get(self, identity: Identity, name: str) -> dict[str, Any]:
        """The trigger's JSON, with its alarm's config (the feed's READ) when it has one."""
        async with self.sessions() as session:
            trigger = await trigger_rows.get_trigger(session, identity.namespace_id, name)
            rules = await trigger_rows.linked_rules(session, trigger.id)
            alarm = await alarm_rows.find_alarm(session, trigger.id)
        body = trigger_json(trigger, identity.namespace, rules)
        if alarm is not None:
            body["feed"] = {"name": f"/{alarm.feed}",
                            "config": alarm_feed.alarm_config(alarm_spec(alarm))}
        return body

    async def delete(self, identity: Identity, name: str) -> dict[str, Any]:
        """Delete the trigger and its alarm; its rules stay, unlinked."""
        async with self.sessions() as session, session.begin():
            trigger = await trigger_rows.get_trigger(session, identity.namespace_id, name)
            rules = await trigger_rows.linked_rules(session, trigger.id)
            body = trigger_json(trigger, identity.namespace, rules)
            await trigger_rows.delete_trigger(session, identity.namespace_id, name)
        return body

    async def fire(self, identity: Identity, name: str,
                   payload: dict[str, Any] | None) -> str | None:
        """Fire the trigger; its record's activation id, or None when no rule is active."""
        async with self.sessions() as session:
            trigger = await trigger_rows.get_trigger(session, identity.namespace_id, name)
        return await self._fire(identity, trigger, payload)

    async def fire_alarm(self, alarm: Alarm) -> str | None:
        """Fire an alarm's trigger with its payload, as the subject that created it."""
        async with self.sessions() as session:
            trigger = await session.get(Trigger, alarm.trigger_id)
        if trigger is None:  # deleted since this pass read the alarms
            logger.info("alarm of trigger %d not fired: the trigger is gone", alarm.trigger_id)
            return None
        identity = Identity(subject=alarm.subject, namespace=alarm.namespace,
                            namespace_id=trigger.namespace_id, key_uuid="")
        return await self._fire(identity, trigger, alarm.payload)

    async def _fire(self, identity: Identity, trigger: Trigger,
                    payload: dict[str, Any] | None) -> str | None:
        start = now_ms()
        async with self.sessions() as session:
            rules = await trigger_rows.linked_rules(session, trigger.id)
        if not any(rule.status == ACTIVE for rule in rules):
            logger.debug("trigger %s/%s fired without an active rule: no record",
                         identity.namespace, trigger.name)
            return None
        args = {**parameter_values(trigger.parameters), **(payload or {})}
        results = [await self._activate(identity, rule, args) for rule in rules]
        activation_id = uuid.uuid4().hex
        async with self.sessions() as session, session.begin():
            session.add(Activation(
                activation_id=activation_id, namespace=identity.namespace, name=trigger.name,
                version=trigger.version, subject=identity.subject, start_ms=start,
                end_ms=start, status_code=SUCCESS,
                response={"status": "success", "statusCode": SUCCESS, "success": True,
                          "result": payload or {}},
                logs=[result.log_line() for result in results], annotations=[]))
        logger.info("trigger %s/%s fired: activation %s, %d rules", identity.namespace,
                    trigger.name, activation_id, len(results))
        return activation_id

    async def _activate(self, identity: Identity, rule: Rule,
                        args: dict[str, Any]) -> RuleResult:
        rule_name, action = f"{identity.namespace}/{rule.name}", action_ref(rule)
        if rule.status != ACTIVE:
            return RuleResult(rule_name, action.as_string(), APPLICATION_ERROR,
                              error=f"Rule '{rule_name}' is inactive, action "
                                    f"'{action.as_string()}' was not activated.")
        async with self.sessions() as session:
            row = await find_rule_action(session, action, identity.namespace)
        try:
            if row is None:
                raise NotFound("The requested resource does not exist.")
            invocation = await self.invocations.start(identity, row.action, args, durable=True,
                                                      resolved=row)
        except LoraFaasError as error:
            code = WHISK_ERROR if error.status >= 500 else APPLICATION_ERROR
            logger.info("trigger-fired action %s of rule %s failed to invoke: %s",
                        action.as_string(), rule_name, error.message)
            return RuleResult(rule_name, action.as_string(), code, error=error.message)
        return RuleResult(rule_name, action.as_string(), SUCCESS,
                          activation_id=invocation.activation_id)


async def _store_alarm(session: AsyncSession, identity: Identity, trigger: Trigger,
                       spec: alarm_feed.AlarmSpec) -> None:
    await alarm_rows.put_alarm(session, Alarm(
        trigger_id=trigger.id, namespace=identity.namespace, subject=identity.subject,
        feed=spec.feed, cron=spec.cron, minutes=spec.minutes, timezone=spec.timezone,
        payload=spec.payload, start_ms=spec.start_ms, stop_ms=spec.stop_ms,
        created_ms=spec.created_ms))


def alarm_spec(alarm: Alarm) -> alarm_feed.AlarmSpec:
    """The schedule of a stored alarm."""
    return alarm_feed.AlarmSpec(alarm.feed, alarm.cron, alarm.minutes, alarm.timezone,
                                alarm.payload, alarm.start_ms, alarm.stop_ms, alarm.created_ms)
