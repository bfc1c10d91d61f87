"""Activations driven by the official OpenWhisk JS client, checked against OpenWhisk's
controller (Activations.scala): a list filtered by `name`, paged by `limit` and `skip`,
bounded by `since` and `upto` (both inclusive, on `start`), counted, with `docs`; and one
activation's record, result and logs."""

from __future__ import annotations

import re

import pytest

from tests.integration.jsclient.harness import ECHO, JsClient

pytestmark = pytest.mark.docker
STAMP = r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\s+"
LOG_LINE = re.compile(STAMP + r"stdout: echo \[\"n\"\]\Z")
ANY_LINE = re.compile(STAMP + r"(stdout|stderr): ")


def annotation(entity: dict[str, object], key: str) -> object:
    """One annotation's value."""
    annotations = entity["annotations"]
    assert isinstance(annotations, list)
    return next((a["value"] for a in annotations if a["key"] == key), None)


def test_list_filters_counts_and_one_record(ow: JsClient) -> None:
    got = ow.run("""
const a = {records: []}
await ow.actions.create({name: 'jsa-echo', action: args.echo, kind: 'python:3'})
for (const n of [1, 2, 3]) a.records.push(await helpers.invoke(ow, {name: 'jsa-echo', params: {n}}))
const [first, second] = a.records
const name = 'jsa-echo'
a.all = await ow.activations.list({name})
a.limited = await ow.activations.list({name, limit: 2})
a.skipped = await ow.activations.list({name, skip: 1, limit: 1})
a.since = await ow.activations.list({name, since: second.start})
a.upto = await ow.activations.list({name, upto: second.start})
a.between = await ow.activations.list({name, since: second.start, upto: second.start})
a.docs = await ow.activations.list({name, docs: true, limit: 1})
a.count = await ow.activations.list({name, count: true})
a.countSince = await ow.activations.list({name, count: true, since: second.start})
a.countSkip = await ow.activations.list({name, count: true, skip: 1})
a.none = await ow.activations.list({name: 'jsa-nothing'})
a.badSince = await helpers.attempt(ow.activations.list({name, since: 'yesterday'}))
// The second: the first ran in a container started for it (its logs hold the start's).
a.got = await ow.activations.get({name: second.activationId})
a.result = await ow.activations.result({name: second.activationId})
a.logs = await ow.activations.logs({name: second.activationId})
a.missing = await helpers.attempt(ow.activations.get({name: '0'.repeat(32)}))
return a
""", echo=ECHO)
    ids = [r["activationId"] for r in got["records"]]
    newest_first = ids[::-1]
    assert [r["activationId"] for r in got["all"]] == newest_first
    assert all(r["name"] == "jsa-echo" and r["namespace"] == "guest" for r in got["all"])
    summary = got["all"][0]
    assert "response" not in summary and "logs" not in summary
    assert summary["statusCode"] == 0
    assert [r["activationId"] for r in got["limited"]] == newest_first[:2]
    assert [r["activationId"] for r in got["skipped"]] == [ids[1]]
    assert [r["activationId"] for r in got["since"]] == [ids[2], ids[1]]
    assert [r["activationId"] for r in got["upto"]] == [ids[1], ids[0]]
    assert [r["activationId"] for r in got["between"]] == [ids[1]]
    docs = got["docs"]
    assert [r["activationId"] for r in docs] == [ids[2]]
    assert docs[0]["response"]["result"] == {"n": 3} and len(docs[0]["logs"]) == 1
    assert got["count"] == {"activations": 3}
    assert got["countSince"] == {"activations": 2}
    assert got["countSkip"] == {"activations": 2}
    assert got["none"] == []
    assert got["badSince"]["statusCode"] == 400

    record = got["got"]
    assert record["activationId"] == ids[1] and record["subject"] == "guest"
    assert record["response"] == {"status": "success", "statusCode": 0, "success": True,
                                  "result": {"n": 2}}
    assert record["duration"] == record["end"] - record["start"]
    assert annotation(record, "path") == "guest/jsa-echo"
    assert annotation(record, "kind") == "python:3"
    limits = annotation(record, "limits")
    assert isinstance(limits, dict) and {"timeout", "memory", "logs"} <= set(limits)
    assert got["result"] == record["response"]
    assert got["logs"] == {"logs": record["logs"]}
    assert len(record["logs"]) == 1 and LOG_LINE.match(record["logs"][0]), record["logs"]
    # The cold one: the action's line last, after its container's start (OpenWhisk's form).
    cold = got["records"][0]["logs"]
    assert LOG_LINE.match(cold[-1]) and all(ANY_LINE.match(line) for line in cold), cold
    assert got["missing"]["statusCode"] == 404
