"""Shapes of the triggers and rules resources: parsing PUT bodies, rendering OpenWhisk's JSON."""

from __future__ import annotations

import re
from typing import Any

from lorafaas.controller.entity_refs import EntityRef
from lorafaas.errors import BadRequest
from lorafaas.registry.models import Rule, Trigger
from lorafaas.registry.rules import ACTIVE, INACTIVE, RulePut, rule_status
from lorafaas.registry.triggers import TriggerPut

SEMVER = re.compile(r"\A\d{1,9}\.\d{1,9}\.\d{1,9}\Z")
FEED_ANNOTATION = "feed"
_FEED_NAME = re.compile(r"\A/?(?:[\w][\w@ .-]*/){0,2}[\w][\w@ .-]*\Z")


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.",
                         param="body")
    return body


def key_values(body: dict[str, Any], field: str) -> list[dict[str, Any]] | None:
    """A `[{"key", "value"}]` field, None when absent."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(kv, dict) and isinstance(kv.get("key"), str) and "value" in kv
            for kv in value):
        raise BadRequest(f"'{field}' must be a list of {{\"key\", \"value\"}} objects",
                         param=field)
    return [{"key": kv["key"], "value": kv["value"]} for kv in value]


def _version(body: dict[str, Any]) -> str | None:
    version = body.get("version")
    if version is None:
        return None
    if not isinstance(version, str) or not SEMVER.match(version):
        raise BadRequest("'version' must be a semantic version MAJOR.MINOR.PATCH",
                         param="version")
    return version


def _publish(body: dict[str, Any]) -> bool | None:
    publish = body.get("publish")
    if publish is not None and not isinstance(publish, bool):
        raise BadRequest("'publish' must be true or false", param="publish")
    return publish


def parse_trigger_put(body: Any) -> TriggerPut:
    """A trigger PUT: parameters, annotations, limits, version, publish (each optional)."""
    fields = _object(body)
    limits = fields.get("limits")
    if limits is not None and not isinstance(limits, dict):
        raise BadRequest("'limits' must be an object", param="limits")
    annotations = key_values(fields, "annotations")
    feed = annotation(annotations or [], FEED_ANNOTATION)
    if feed is not None and not (isinstance(feed, str) and _FEED_NAME.match(feed)):
        raise BadRequest("Feed name is not valid", param="annotations")
    return TriggerPut(parameters=key_values(fields, "parameters"), annotations=annotations,
                      limits=None if limits is None else {}, version=_version(fields),
                      publish=_publish(fields))


def parse_rule_put(body: Any) -> tuple[Any, Any, RulePut]:
    """A rule PUT: its trigger and action as given (resolved by the caller), and the rest."""
    fields = _object(body)
    return fields.get("trigger"), fields.get("action"), RulePut(
        annotations=key_values(fields, "annotations"), version=_version(fields),
        publish=_publish(fields))


def parse_status(body: Any) -> str:
    """The body of a rule's POST: `{"status": "active" | "inactive"}`."""
    status = body.get("status") if isinstance(body, dict) else None
    if status not in (ACTIVE, INACTIVE):
        shown = status if isinstance(status, str) else "status"
        raise BadRequest(f"'{shown[:100]}' is not a recognized rule state, must be one of "
                         f"['{ACTIVE}', '{INACTIVE}']", param="status")
    return str(status)


def annotation(annotations: list[dict[str, Any]], key: str) -> Any:
    """The value of one annotation, or None."""
    return next((a.get("value") for a in annotations if a.get("key") == key), None)


def trigger_json(trigger: Trigger, namespace: str, rules: list[Rule]) -> dict[str, Any]:
    """A trigger as OpenWhisk's JSON; `rules` maps each linked rule to its action and status."""
    return {"namespace": namespace, "name": trigger.name, "version": trigger.version,
            "parameters": trigger.parameters, "annotations": trigger.annotations,
            "limits": trigger.limits, "publish": trigger.publish,
            "rules": {f"{namespace}/{rule.name}": {"action": action_ref(rule).json(),
                                                   "status": rule.status}
                      for rule in rules},
            "updated": trigger.updated_ms}


def action_ref(rule: Rule) -> EntityRef:
    """The rule's action's qualified name."""
    return EntityRef(rule.action_path, rule.action_name)


def rule_json(rule: Rule, namespace: str, status: str | None = None) -> dict[str, Any]:
    """A rule as OpenWhisk's JSON (WhiskRuleResponse), with its status."""
    return {"namespace": namespace, "name": rule.name, "version": rule.version,
            "status": status or rule_status(rule),
            "trigger": EntityRef(rule.trigger_path, rule.trigger_name).json(),
            "action": action_ref(rule).json(), "annotations": rule.annotations,
            "publish": rule.publish, "updated": rule.updated_ms}
