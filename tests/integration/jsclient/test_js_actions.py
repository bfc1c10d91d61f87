"""Actions and activations driven by the official OpenWhisk JS client, as its users call
it: a lora action created from a zip without `binary`, read, listed, counted, updated
(merged), invoked blocking and not, and its activations read back."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.integration.jsclient.harness import JsClient, JsError

pytestmark = pytest.mark.docker
PARAMS = {"prompt": "Ahoy", "max_tokens": 3, "temperature": 0}
# A blocking invoke, its record polled when a cold start outlasts the blocking wait (202).
INVOKE = """
const answer = await ow.actions.invoke({name: args.name, blocking: true, params: args.params})
return answer.response ? answer : await helpers.record(ow, answer.activationId)
"""


def create(ow: JsClient, name: str, zip_path: Path, **options: Any) -> Any:
    """`ow.actions.create` from the zip read as a Buffer, kind lora, no `binary`."""
    return ow.run("""
const action = require('fs').readFileSync(args.zip)
return await ow.actions.create({name: args.name, action, kind: 'lora', ...args.options})
""", name=name, zip=str(zip_path), options=options)


def test_create_get_list_and_count(ow: JsClient, adapter_zip: Path) -> None:
    created = create(ow, "js-get", adapter_zip, params={"max_tokens": 3})
    assert "binary" not in _sent_exec(ow)  # the client's own body: no binary in it
    assert created["version"] == "0.0.1" and created["exec"]["binary"] is True
    assert base64.b64decode(created["exec"]["code"]) == adapter_zip.read_bytes()
    got = ow.run("return await ow.actions.get({name: 'js-get'})")
    assert got["exec"]["code"] == created["exec"]["code"]
    assert got["parameters"] == [{"key": "max_tokens", "value": 3}]
    assert got["limits"]["logs"] == 10  # OpenWhisk's default log limit
    bare = ow.run("return await ow.actions.get({name: 'js-get', code: false})")
    assert "code" not in bare["exec"]
    create(ow, "js-get-2", adapter_zip)
    listed = ow.run("return await ow.actions.list()")
    assert {"js-get", "js-get-2"} <= {a["name"] for a in listed}
    assert all("code" not in a["exec"] for a in listed)
    counted = ow.run("return await ow.actions.list({count: true})")
    assert counted == {"actions": len(listed)}
    with pytest.raises(JsError) as exists:
        create(ow, "js-get", adapter_zip)
    assert exists.value.status == 409


def _sent_exec(ow: JsClient) -> Any:
    # What the client puts in `exec` for a Buffer, without sending it.
    return ow.run("""
const Actions = require('openwhisk/lib/actions')
return new Actions({}).actionBody({action: Buffer.from('zip'), kind: 'lora'}).exec
""")


def test_update_merges_what_it_leaves_out(ow: JsClient, adapter_zip: Path) -> None:
    create(ow, "js-merge", adapter_zip, params={"max_tokens": 3},
           annotations={"note": "kept"}, limits={"timeout": 30_000, "memory": 1024})
    # No action: exec stays, and so do the annotations; the limits not named are kept.
    updated = ow.run("""
return await ow.actions.update({name: 'js-merge', limits: {timeout: 40000}})
""")
    assert updated["version"] == "0.0.2"
    assert updated["limits"]["timeout"] == 40_000 and updated["limits"]["memory"] == 1024
    assert updated["parameters"] == [{"key": "max_tokens", "value": 3}]
    assert {"key": "note", "value": "kept"} in updated["annotations"]
    assert base64.b64decode(updated["exec"]["code"]) == adapter_zip.read_bytes()
    renamed = ow.run("""
return await ow.actions.update({name: 'js-merge', params: {max_tokens: 2}})
""")
    assert renamed["parameters"] == [{"key": "max_tokens", "value": 2}]
    assert renamed["limits"]["timeout"] == 40_000
    record = ow.run(INVOKE, name="js-merge", params={"prompt": "Ahoy"})
    assert record["response"]["success"] is True, record
    assert record["response"]["result"]["usage"]["completion_tokens"] <= 2


def test_invoke_and_read_activations(ow: JsClient, adapter_zip: Path) -> None:
    create(ow, "js-run", adapter_zip)
    record = ow.run(INVOKE, name="js-run", params=PARAMS)
    assert record["response"]["status"] == "success" and record["name"] == "js-run"
    activation_id = record["activationId"]
    queued = ow.run("return await ow.actions.invoke({name: 'js-run', params: args.params})",
                    params=PARAMS)
    assert set(queued) == {"activationId"}
    later = ow.run("return await helpers.record(ow, args.id)", id=queued["activationId"])
    assert later["response"]["success"] is True

    got = ow.run("return await ow.activations.get({name: args.id})", id=activation_id)
    assert got["response"]["result"] == record["response"]["result"]
    result = ow.run("return await ow.activations.result({name: args.id})", id=activation_id)
    assert result["result"] == record["response"]["result"] and result["success"] is True
    logs = ow.run("return await ow.activations.logs({name: args.id})", id=activation_id)
    assert isinstance(logs["logs"], list)
    listed = ow.run("return await ow.activations.list({name: 'js-run'})")
    assert {activation_id, queued["activationId"]} <= {a["activationId"] for a in listed}
    counted = ow.run("return await ow.activations.list({name: 'js-run', count: true})")
    assert counted == {"activations": 2}
    with pytest.raises(JsError) as refused:
        ow.run("return await ow.activations.list({count: true, docs: true})")
    assert refused.value.status == 400
    assert refused.value.body["error"] == "The parameter 'docs' is not permitted with 'count'."


def test_final_parameters_cannot_be_overridden(ow: JsClient, adapter_zip: Path) -> None:
    create(ow, "js-final", adapter_zip, params={"max_tokens": 2}, annotations={"final": True})
    with pytest.raises(JsError) as refused:
        ow.run(INVOKE, name="js-final", params={"prompt": "Ahoy", "max_tokens": 3})
    assert refused.value.status == 400
    assert refused.value.body["error"] == ("Request defines parameters that are not allowed "
                                           "(e.g., reserved properties).")
    record = ow.run(INVOKE, name="js-final", params={"prompt": "Ahoy"})
    assert record["response"]["success"] is True

