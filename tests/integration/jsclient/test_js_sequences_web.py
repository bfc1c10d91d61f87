"""Sequences and web actions driven by the official OpenWhisk JS client, checked against
OpenWhisk's controller (Actions.scala, SequenceActions.scala, WebActions.scala): a sequence
created with the client's `sequence` option and with an `exec` of kind `sequence`, invoked
blocking, its record as OpenWhisk writes it (the last component's result, the components'
activation ids as its logs, `topmost`, `kind`, `path`; each component's `cause`); and
actions annotated `web-export` called on `/api/v1/web/...` with node's own fetch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.jsclient.harness import ECHO, JsClient

pytestmark = pytest.mark.docker
# Appends its own `tag` parameter to the `trail` it was given.
STEP = """def main(args):
    return {"trail": args.get("trail", []) + [args["tag"]]}
"""
# A lora component's parameters from a word.
PROMPT = """def main(args):
    return {"prompt": "Ahoy " + args["word"], "max_tokens": 3, "temperature": 0}
"""
# A `.http` result: status, headers and body chosen by the action.
HTTP = """def main(args):
    what = args.get("what", "it")
    return {"statusCode": 201, "headers": {"X-Made": what}, "body": "made " + what}
"""


def annotation(entity: dict[str, Any], key: str) -> Any:
    """One annotation's value."""
    return next((a["value"] for a in entity["annotations"] if a["key"] == key), None)


def test_a_sequence_runs_its_components_in_order(ow: JsClient) -> None:
    got = ow.run("""
const a = {}
await ow.actions.create({name: 'jss-a', action: args.step, kind: 'python:3',
                         params: {tag: 'a'}})
await ow.actions.create({name: 'jss-b', action: args.step, kind: 'python:3',
                         params: {tag: 'b'}})
a.created = await ow.actions.create({name: 'jss-seq', sequence: ['/_/jss-a', '/guest/jss-b']})
a.got = await ow.actions.get({name: 'jss-seq'})
a.record = await helpers.invoke(ow, {name: 'jss-seq', params: {trail: ['start']}})
a.components = []
for (const id of a.record.logs) a.components.push(await helpers.record(ow, id))
a.result = await ow.actions.invoke({name: 'jss-seq', blocking: true, result: true})
a.missing = await helpers.attempt(ow.actions.create({name: 'jss-bad',
                                                     sequence: ['/_/jss-none']}))
a.absent = await helpers.attempt(ow.actions.get({name: 'jss-bad'}))
return a
""", step=STEP)
    created = got["created"]
    assert created["exec"] == {"kind": "sequence", "components": ["/guest/jss-a",
                                                                   "/guest/jss-b"]}
    assert annotation(created, "exec") == "sequence"
    assert got["got"]["exec"] == created["exec"]
    record = got["record"]
    assert record["name"] == "jss-seq" and record["response"]["success"] is True
    assert record["response"]["result"] == {"trail": ["start", "a", "b"]}
    assert "cause" not in record  # topmost: no cause
    assert annotation(record, "topmost") is True
    assert annotation(record, "kind") == "sequence"
    assert annotation(record, "path") == "guest/jss-seq"
    assert len(record["logs"]) == 2
    assert [c["activationId"] for c in got["components"]] == record["logs"]
    assert [c["name"] for c in got["components"]] == ["jss-a", "jss-b"]
    assert [c["response"]["result"] for c in got["components"]] == [
        {"trail": ["start", "a"]}, {"trail": ["start", "a", "b"]}]
    assert all(c["cause"] == record["activationId"] for c in got["components"])
    assert got["result"] == {"trail": ["a", "b"]}
    assert got["missing"]["statusCode"] == 400
    assert got["missing"]["body"]["error"] == "Sequence component does not exist."
    assert got["absent"]["statusCode"] == 404


def test_a_sequence_of_an_exec_object_feeds_a_lora_action(ow: JsClient,
                                                           adapter_zip: Path) -> None:
    got = ow.run("""
await ow.actions.create({name: 'jss-prompt', action: args.prompt, kind: 'python:3'})
await ow.actions.create({name: 'jss-pirate', kind: 'lora',
                         action: require('fs').readFileSync(args.zip)})
// The client sends an object `action` as the whole body.
const created = await ow.actions.create({name: 'jss-lora', action: {
  exec: {kind: 'sequence', components: ['/_/jss-prompt', '/_/jss-pirate']}}})
const record = await helpers.invoke(ow, {name: 'jss-lora', params: {word: 'matey'}})
const last = await helpers.record(ow, record.logs[1])
return {created, record, last}
""", prompt=PROMPT, zip=str(adapter_zip))
    assert got["created"]["exec"]["components"] == ["/guest/jss-prompt", "/guest/jss-pirate"]
    record, last = got["record"], got["last"]
    assert record["response"]["success"] is True, record
    assert record["response"]["result"] == last["response"]["result"]
    assert last["name"] == "jss-pirate" and last["cause"] == record["activationId"]
    result = record["response"]["result"]
    assert isinstance(result["text"], str) and result["usage"]["completion_tokens"] <= 3


def test_web_actions_answer_plain_http(ow: JsClient) -> None:
    got = ow.run("""
const a = {}
const web = {'web-export': true}
a.created = await ow.actions.create({name: 'jsw-echo', action: args.echo, kind: 'python:3',
                                     params: {fixed: 'action'}, annotations: web})
await ow.actions.create({name: 'jsw-http', action: args.http, kind: 'python:3',
                         annotations: web})
await ow.actions.create({name: 'jsw-hidden', action: args.echo, kind: 'python:3'})
await ow.actions.create({name: 'jsw-secret', action: args.echo, kind: 'python:3',
                         annotations: {'web-export': true, 'require-whisk-auth': 'sesame'}})
const base = '/api/v1/web/guest/default/'
a.json = await helpers.fetch(base + 'jsw-echo.json?text=hello')
a.posted = await helpers.fetch(base + 'jsw-echo.json', {method: 'POST',
  headers: {'Content-Type': 'application/json'}, body: JSON.stringify({x: 1})})
a.text = await helpers.fetch(base + 'jsw-echo.text?text=hello')
a.http = await helpers.fetch(base + 'jsw-http?what=cake')
a.hidden = await helpers.fetch(base + 'jsw-hidden.json')
a.reserved = await helpers.fetch(base + 'jsw-echo.json?__ow_method=put')
a.final = await helpers.fetch(base + 'jsw-echo.json?fixed=caller')
a.noSecret = await helpers.fetch(base + 'jsw-secret.json')
a.secret = await helpers.fetch(base + 'jsw-secret.json',
                               {headers: {'X-Require-Whisk-Auth': 'sesame'}})
return a
""", echo=ECHO, http=HTTP)
    assert annotation(got["created"], "web-export") is True
    page = got["json"]
    assert page["status"] == 200 and page["headers"]["content-type"].startswith(
        "application/json")
    args = json.loads(page["body"])
    assert args["__ow_method"] == "get" and args["__ow_path"] == ""
    assert args["text"] == "hello" and args["fixed"] == "action"
    assert "authorization" not in args["__ow_headers"] and "__ow_user" not in args
    posted = json.loads(got["posted"]["body"])
    assert got["posted"]["status"] == 200 and posted["__ow_method"] == "post"
    assert (got["text"]["status"], got["text"]["body"]) == (200, "hello")
    assert got["text"]["headers"]["content-type"].startswith("text/plain")
    http = got["http"]
    assert (http["status"], http["body"], http["headers"]["x-made"]) == (201, "made cake",
                                                                          "cake")
    assert http["headers"]["content-type"].startswith("text/html")
    hidden = got["hidden"]
    assert hidden["status"] == 404
    assert json.loads(hidden["body"])["error"] == "The requested resource does not exist."
    assert got["reserved"]["status"] == 400
    assert json.loads(got["reserved"]["body"])["error"] == (
        "Request defines parameters that are not allowed (e.g., reserved properties).")
    # Not `final`: a caller's query parameter overrides the action's.
    assert json.loads(got["final"]["body"])["fixed"] == "caller"
    assert got["noSecret"]["status"] == 401
    assert got["secret"]["status"] == 200
    # A JSON body reaches the action as parameters, not as a binary `__ow_body`.
    assert posted["x"] == 1 and "__ow_body" not in posted
