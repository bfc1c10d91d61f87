"""Triggers, rules and the alarms feed driven by the official OpenWhisk JS client, checked
against OpenWhisk's controller (Triggers.scala, Rules.scala) and the client's `feeds`: CRUD
and count, an update that merges, a fire answered 204 without an active rule and 202 with
the trigger's activation id otherwise, that activation's logs naming each rule's
activation, enable and disable, and an alarm created and deleted through `feeds`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.jsclient.harness import ECHO, JsClient

pytestmark = pytest.mark.docker


# What the client answers for a body-less reply (a 204): an empty Buffer.
EMPTY = "const empty = answer => Buffer.isBuffer(answer) && answer.length === 0\n"


def kv(**values: Any) -> list[dict[str, Any]]:
    """OpenWhisk's `[{"key", "value"}]` form."""
    return [{"key": key, "value": value} for key, value in values.items()]


def test_trigger_crud_count_and_merged_update(ow: JsClient) -> None:
    got = ow.run(EMPTY + """
const a = {}
a.created = await ow.triggers.create({name: 'jst-crud', trigger: {
  parameters: [{key: 'a', value: 1}], annotations: [{key: 'note', value: 'kept'}]}})
a.got = await ow.triggers.get({name: 'jst-crud'})
a.listed = await ow.triggers.list()
a.counted = await ow.triggers.list({count: true})
a.exists = await helpers.attempt(ow.triggers.create({name: 'jst-crud'}))
a.bare = await ow.triggers.update({name: 'jst-crud'})
a.renamed = await ow.triggers.update({name: 'jst-crud', trigger: {
  parameters: [{key: 'a', value: 2}]}})
a.unruled = empty(await ow.triggers.invoke({name: 'jst-crud', params: {x: 1}}))
a.deleted = await ow.triggers.delete({name: 'jst-crud'})
a.gone = await helpers.attempt(ow.triggers.get({name: 'jst-crud'}))
a.fireGone = await helpers.attempt(ow.triggers.invoke({name: 'jst-crud'}))
return a
""")
    created = got["created"]
    assert {k: created[k] for k in ("namespace", "name", "version", "publish", "limits",
                                    "parameters", "annotations")} == {
        "namespace": "guest", "name": "jst-crud", "version": "0.0.1", "publish": False,
        "limits": {}, "parameters": kv(a=1), "annotations": kv(note="kept")}
    assert got["got"]["name"] == "jst-crud" and got["got"]["parameters"] == kv(a=1)
    assert "jst-crud" in {t["name"] for t in got["listed"]}
    assert got["counted"] == {"triggers": len(got["listed"])}
    assert got["exists"]["statusCode"] == 409
    # ?overwrite=true keeps what the update leaves out (Triggers.scala `update`).
    assert got["bare"]["version"] == "0.0.2" and got["bare"]["parameters"] == kv(a=1)
    assert got["bare"]["annotations"] == kv(note="kept")
    assert got["renamed"]["version"] == "0.0.3" and got["renamed"]["parameters"] == kv(a=2)
    assert got["renamed"]["annotations"] == kv(note="kept")
    # No active rule: 204 No Content, which the client answers as an empty body.
    assert got["unruled"] is True
    assert got["deleted"]["name"] == "jst-crud"
    assert got["gone"]["statusCode"] == 404 and got["fireGone"]["statusCode"] == 404


def test_rules_fire_their_actions_and_the_trigger_records_them(ow: JsClient) -> None:
    got = ow.run(EMPTY + """
const a = {}
await ow.actions.create({name: 'jst-echo', action: args.echo, kind: 'python:3',
                         params: {fromAction: 'action'}})
await ow.triggers.create({name: 'jst-fire', trigger: {parameters: [
  {key: 'fromTrigger', value: 'trigger'}, {key: 'both', value: 'trigger'}]}})
a.rule = await ow.rules.create({name: 'jst-rule', action: 'jst-echo', trigger: 'jst-fire'})
a.other = await ow.rules.create({name: 'jst-rule2', action: '/_/jst-echo',
                                 trigger: '/_/jst-fire'})
a.got = await ow.rules.get({name: 'jst-rule'})
a.trigger = await ow.triggers.get({name: 'jst-fire'})
a.listed = await ow.rules.list()
a.counted = await ow.rules.list({count: true})
a.noTrigger = await helpers.attempt(ow.rules.create({name: 'jst-x', action: 'jst-echo',
                                                     trigger: 'jst-none'}))
a.noAction = await helpers.attempt(ow.rules.create({name: 'jst-x', action: 'jst-none',
                                                    trigger: 'jst-fire'}))
a.fired = await ow.triggers.invoke({name: 'jst-fire', params: {both: 'payload', p: 1}})
a.record = await helpers.record(ow, a.fired.activationId)
a.ruleRecords = []
for (const line of a.record.logs) {
  a.ruleRecords.push(await helpers.record(ow, JSON.parse(line).activationId))
}
a.disableReply = await ow.rules.disable({name: 'jst-rule2'})
a.disabled = await ow.rules.get({name: 'jst-rule2'})
a.again = await ow.triggers.invoke({name: 'jst-fire', params: {p: 2}})
a.againRecord = await helpers.record(ow, a.again.activationId)
await ow.rules.disable({name: 'jst-rule'})
a.none = empty(await ow.triggers.invoke({name: 'jst-fire'}))
a.enableReply = await ow.rules.enable({name: 'jst-rule'})
a.enabled = await ow.rules.get({name: 'jst-rule'})
a.deleted = await ow.rules.delete({name: 'jst-rule'})
a.gone = await helpers.attempt(ow.rules.get({name: 'jst-rule'}))
a.triggerAfter = await ow.triggers.get({name: 'jst-fire'})
return a
""", echo=ECHO)
    rule = got["rule"]
    assert {k: rule[k] for k in ("namespace", "name", "version", "status", "trigger",
                                 "action", "publish", "annotations")} == {
        "namespace": "guest", "name": "jst-rule", "version": "0.0.1", "status": "active",
        "trigger": {"path": "guest", "name": "jst-fire"},
        "action": {"path": "guest", "name": "jst-echo"}, "publish": False, "annotations": []}
    assert got["other"]["trigger"] == {"path": "guest", "name": "jst-fire"}
    assert got["got"]["status"] == "active"
    assert got["trigger"]["rules"] == {
        name: {"action": {"path": "guest", "name": "jst-echo"}, "status": "active"}
        for name in ("guest/jst-rule", "guest/jst-rule2")}
    assert {"jst-rule", "jst-rule2"} <= {r["name"] for r in got["listed"]}
    assert got["counted"] == {"rules": len(got["listed"])}
    assert (got["noTrigger"]["statusCode"], got["noTrigger"]["body"]["error"]) == (
        400, "trigger /guest/jst-none does not exist")
    assert (got["noAction"]["statusCode"], got["noAction"]["body"]["error"]) == (
        400, "action /guest/jst-none does not exist")

    # The trigger's activation: its result is the payload; one log line per rule.
    record = got["record"]
    assert set(got["fired"]) == {"activationId"}
    assert record["activationId"] == got["fired"]["activationId"]
    assert record["name"] == "jst-fire" and record["namespace"] == "guest"
    assert record["response"]["result"] == {"both": "payload", "p": 1}
    lines = sorted((json.loads(line) for line in record["logs"]), key=lambda line: line["rule"])
    assert [{k: v for k, v in line.items() if k != "activationId"} for line in lines] == [
        {"rule": f"guest/{name}", "action": "guest/jst-echo", "statusCode": 0, "success": True}
        for name in ("jst-rule", "jst-rule2")]
    # Each rule's action ran with the trigger's parameters, the payload over them.
    for action_record in got["ruleRecords"]:
        assert action_record["name"] == "jst-echo"
        result = action_record["response"]["result"]
        assert {k: result[k] for k in ("fromAction", "fromTrigger", "both", "p")} == {
            "fromAction": "action", "fromTrigger": "trigger", "both": "payload", "p": 1}

    # A disabled rule: recorded as not activated (Messages.triggerWithInactiveRule).
    assert got["disabled"]["status"] == "inactive"
    # OpenWhisk's `complete(OK)`: the client hands back the text body as it came.
    assert (got["disableReply"], got["enableReply"]) == ("OK", "OK")
    by_rule = {json.loads(line)["rule"]: json.loads(line) for line in got["againRecord"]["logs"]}
    assert by_rule["guest/jst-rule"]["success"] is True
    assert by_rule["guest/jst-rule2"] == {
        "rule": "guest/jst-rule2", "action": "guest/jst-echo", "statusCode": 1,
        "success": False,
        "error": "Rule 'guest/jst-rule2' is inactive, action 'guest/jst-echo' was not activated."}
    assert got["none"] is True  # every rule inactive: 204, no body
    assert got["enabled"]["status"] == "active"
    assert got["deleted"]["name"] == "jst-rule" and got["deleted"]["status"] == "inactive"
    assert got["gone"]["statusCode"] == 404
    assert set(got["triggerAfter"]["rules"]) == {"guest/jst-rule2"}


def test_an_alarm_created_through_feeds_fires_its_trigger(ow: JsClient) -> None:
    got = ow.run(EMPTY + """
const a = {}
const feed = '/whisk.system/alarms/alarm'
await ow.actions.create({name: 'jst-tick', action: args.echo, kind: 'python:3'})
// As `wsk trigger create --feed` does: the trigger, annotated, then the feed's CREATE.
await ow.triggers.create({name: 'jst-alarm', trigger: {
  annotations: [{key: 'feed', value: feed}]}})
await ow.rules.create({name: 'jst-alarm-rule', action: 'jst-tick', trigger: 'jst-alarm'})
a.created = await ow.feeds.create({name: feed, trigger: 'jst-alarm',
  params: {cron: '* * * * * *', trigger_payload: {tick: true}}})
a.read = await ow.feeds.get({name: feed, trigger: 'jst-alarm'})
await ow.triggers.create({name: 'jst-alarm2'})
a.bad = await helpers.attempt(ow.feeds.create({name: feed, trigger: 'jst-alarm2',
                                               params: {cron: 'never'}}))
// The alarm fires each second: wait for the trigger's first activation.
for (let tries = 0; tries < 240 && !a.fired; tries++) {
  const listed = await ow.activations.list({name: 'jst-alarm', limit: 1})
  if (listed.length) a.fired = await helpers.record(ow, listed[0].activationId)
  else await new Promise(resolve => setTimeout(resolve, 250))
}
a.deleted = await ow.feeds.delete({name: feed, trigger: 'jst-alarm'})
a.readGone = await helpers.attempt(ow.feeds.get({name: feed, trigger: 'jst-alarm'}))
await ow.rules.delete({name: 'jst-alarm-rule'})
await ow.triggers.delete({name: 'jst-alarm'})
await ow.triggers.delete({name: 'jst-alarm2'})
return a
""", echo=ECHO)
    created = got["created"]
    assert created["response"]["success"] is True, created
    assert got["read"]["response"]["result"]["config"]["cron"] == "* * * * * *"
    assert got["bad"]["statusCode"] == 502
    assert got["bad"]["body"]["response"]["result"] == {
        "error": "cron pattern 'never' is not valid"}
    fired = got["fired"]
    assert fired is not None, "the alarm never fired its trigger"
    assert fired["response"]["result"] == {"tick": True}
    line = json.loads(fired["logs"][0])
    assert line["rule"] == "guest/jst-alarm-rule" and line["success"] is True
    assert got["deleted"]["response"]["success"] is True
    assert got["readGone"]["statusCode"] == 502  # the feed has no alarm for it any more
