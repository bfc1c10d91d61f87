"""Shapes of triggers and rules: qualified names as OpenWhisk resolves them, the refusals,
and the trigger record's log lines."""

from __future__ import annotations

import json

import pytest

from lorafaas.controller.entity_refs import EntityRef, parse_ref
from lorafaas.controller.trigger_protocol import parse_status, parse_trigger_put
from lorafaas.controller.trigger_service import RuleResult
from lorafaas.errors import BadRequest


@pytest.mark.parametrize(("given", "path", "name"), [
    ("t", "guest", "t"), ("pkg/a", "guest/pkg", "a"), ("/_/t", "guest", "t"),
    ("/other/t", "other", "t"), ("/ns/pkg/a", "ns/pkg", "a"), ("ns/pkg/a", "ns/pkg", "a"),
    ({"path": "guest", "name": "t"}, "guest", "t"),
])
def test_names_resolve_as_openwhisk_resolves_them(given: object, path: str, name: str) -> None:
    assert parse_ref(given, "guest", "trigger") == EntityRef(path, name)


@pytest.mark.parametrize("given", ["", "/t", "a/b/c/d", "/a//b", " t", 3, None, "a/-b"])
def test_bad_names_are_refused_naming_the_field(given: object) -> None:
    with pytest.raises(BadRequest) as error:
        parse_ref(given, "guest", "action")
    assert "'action'" in error.value.message


def test_rule_status_is_active_or_inactive() -> None:
    assert parse_status({"status": "inactive"}) == "inactive"
    with pytest.raises(BadRequest) as error:
        parse_status({"status": "on"})
    assert error.value.message == ("'on' is not a recognized rule state, must be one of "
                                   "['active', 'inactive']")
    with pytest.raises(BadRequest):
        parse_status([])


def test_trigger_puts_are_checked() -> None:
    put = parse_trigger_put({"parameters": [{"key": "a", "value": 1}]})
    assert put.parameters == [{"key": "a", "value": 1}] and put.annotations is None
    with pytest.raises(BadRequest, match="Feed name is not valid"):
        parse_trigger_put({"annotations": [{"key": "feed", "value": 7}]})
    with pytest.raises(BadRequest, match="'version'"):
        parse_trigger_put({"version": "1.0"})
    with pytest.raises(BadRequest, match="JSON object"):
        parse_trigger_put([1])


def test_log_lines_are_openwhisk_s_rule_activation_results() -> None:
    ran = json.loads(RuleResult("guest/r", "guest/a", 0, activation_id="a" * 32).log_line())
    assert ran == {"rule": "guest/r", "action": "guest/a", "statusCode": 0, "success": True,
                   "activationId": "a" * 32}
    failed = json.loads(RuleResult("guest/r", "guest/a", 1, error="gone").log_line())
    assert failed == {"rule": "guest/r", "action": "guest/a", "statusCode": 1,
                      "success": False, "error": "gone"}
