"""Rules as OpenWhisk runs them: PUT checks that the trigger and the action exist (400
naming the missing one), a new rule is active, POST enables or disables it, and a rule
whose trigger was deleted reads as inactive until it is enabled against a trigger of that
name again (404 while there is none)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.entity_refs import EntityRef, find_rule_action, parse_ref
from lorafaas.controller.trigger_protocol import parse_rule_put, rule_json
from lorafaas.errors import BadRequest, Forbidden, NotFound
from lorafaas.registry import rules as rule_rows
from lorafaas.registry import triggers as trigger_rows
from lorafaas.registry.models import Trigger
from lorafaas.registry.namespaces import Identity
from lorafaas.registry.rules import INACTIVE, RuleTargets


class RuleService:
    """Creates, updates, enables, disables and deletes rules."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def put(self, identity: Identity, name: str, body: Any,
                  overwrite: bool) -> dict[str, Any]:
        """Create the rule (active), or with `overwrite` update it (its status kept)."""
        trigger_value, action_value, put = parse_rule_put(body)
        async with self.sessions() as session, session.begin():
            rule = await rule_rows.find_rule(session, identity.namespace_id, name)
            rule_rows.put_conflict(rule, overwrite)
            if rule is None:
                if trigger_value is None or action_value is None:
                    raise BadRequest("rule requires a valid trigger and a valid action")
                targets = await self._targets(session, identity, trigger_value, action_value)
                rule = await rule_rows.create_rule(session, identity.namespace_id, name,
                                                   targets, put)
            else:
                targets = await self._targets(
                    session, identity,
                    trigger_value or {"path": rule.trigger_path, "name": rule.trigger_name},
                    action_value or {"path": rule.action_path, "name": rule.action_name})
                rule = await rule_rows.update_rule(rule, targets, put, session)
            return rule_json(rule, identity.namespace)

    async def _targets(self, session: AsyncSession, identity: Identity, trigger_value: Any,
                       action_value: Any) -> RuleTargets:
        own = identity.namespace
        trigger_ref = parse_ref(trigger_value, own, "trigger")
        action_ref = parse_ref(action_value, own, "action")
        for ref in (trigger_ref, action_ref):
            if ref.namespace != own:
                raise Forbidden("The supplied authentication is not authorized to access "
                                f"'{ref.with_slash()}'.")
        trigger = await trigger_rows.find_trigger(session, identity.namespace_id,
                                                  trigger_ref.name)
        if trigger is None or trigger_ref.package is not None:
            raise BadRequest(f"trigger {trigger_ref.with_slash()} does not exist",
                             param="trigger")
        if await find_rule_action(session, action_ref, own) is None:
            raise BadRequest(f"action {action_ref.with_slash()} does not exist",
                             param="action")
        return RuleTargets(trigger, trigger_ref.path, action_ref.path, action_ref.name)

    async def get(self, identity: Identity, name: str) -> dict[str, Any]:
        """The rule with its status."""
        async with self.sessions() as session:
            rule = await rule_rows.get_rule(session, identity.namespace_id, name)
        return rule_json(rule, identity.namespace)

    async def delete(self, identity: Identity, name: str) -> dict[str, Any]:
        """Delete the rule; it is shown inactive, as OpenWhisk answers."""
        async with self.sessions() as session, session.begin():
            rule = await rule_rows.delete_rule(session, identity.namespace_id, name)
        return rule_json(rule, identity.namespace, INACTIVE)

    async def set_status(self, identity: Identity, name: str, status: str) -> None:
        """Enable or disable the rule, linking it to its trigger (404 when that is gone)."""
        async with self.sessions() as session, session.begin():
            rule = await rule_rows.get_rule(session, identity.namespace_id, name)
            if rule_rows.rule_status(rule) != status:  # the same state: nothing to change
                trigger = await self._trigger_of(session, identity, rule.trigger_path,
                                                 rule.trigger_name)
                await rule_rows.set_status(session, rule, trigger, status)

    async def _trigger_of(self, session: AsyncSession, identity: Identity, path: str,
                          name: str) -> Trigger:
        ref = EntityRef(path, name)
        trigger = None
        if ref.namespace == identity.namespace and ref.package is None:
            trigger = await trigger_rows.find_trigger(session, identity.namespace_id, name)
        if trigger is None:
            raise NotFound("Only rules with existing triggers can be activated")
        return trigger

    async def listing(self, identity: Identity, limit: int, skip: int) -> list[dict[str, Any]]:
        """The namespace's rules, with their status."""
        async with self.sessions() as session:
            rows = await rule_rows.list_rules(session, identity.namespace_id, limit, skip)
        return [rule_json(row, identity.namespace) for row in rows]
