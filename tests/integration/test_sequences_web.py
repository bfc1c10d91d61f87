"""Sequences and web actions on the real platform (registry, backbone server, Docker), one
platform for the module: records as OpenWhisk writes them, refusals that leave nothing
behind, and web actions with and without `require-whisk-auth`.

Lora actions: `pirate` and `shout` (sequence components) and `webby` (exported, `final`, two
greedy tokens); `slow` is a python:3 action sleeping past its 100 ms time limit (a failing
component, however fast its container starts). The web actions
that need a key are sequences of `webby`, so that no further container starts.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.integration.served import module_settings
from tests.integration.test_two_backbones import console_sign_in

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]
ACTIONS = "/api/v1/namespaces/_/actions"
ACTIVATIONS = "/api/v1/namespaces/_/activations"
WEB = "/api/v1/web/guest/default"
WAIT_MS = 600_000  # a cold start on a shared, busy machine: never a measure
PARAMETERS = {"prompt": "Ahoy", "max_tokens": 3}


@dataclass
class Platform:
    """The module's platform: a client, and the guest's Basic auth header."""

    client: Any
    auth: dict[str, str]
    credential: str
    settings: Any = None

    async def call(self, method: str, path: str, *, auth: bool = True,
                   **kwargs: Any) -> tuple[int, Any, Any]:
        """(status, JSON or text body, headers) of one request."""
        headers = {**(self.auth if auth else {}), **kwargs.pop("headers", {})}
        if "json" in kwargs:  # a stream: aiohttp warns about large in-memory bodies
            kwargs["data"] = io.BytesIO(json.dumps(kwargs.pop("json")).encode())
            headers["Content-Type"] = "application/json"
        async with self.client.request(method, path, headers=headers, **kwargs) as response:
            text = await response.text()
            body = await response.json() if response.content_type == "application/json" \
                else text
            return response.status, body, response.headers


def zipped(folder: Path) -> str:
    """The adapter folder as an action's base64 zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            archive.write(path, path.name)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(demo_models: Any, runtime_image: str) -> AsyncIterator[Platform]:
    """The platform with the module's four lora actions, `pirate` and `webby` warm."""
    from aiohttp.test_utils import TestClient

    from lorafaas.controller.app import create_app
    from lorafaas.controller.bootstrap import ensure_guest
    from lorafaas.registry.db import upgrade
    from tests.conftest import PlatformTestServer

    root = Path(tempfile.mkdtemp(prefix="lf-seq-", dir="/tmp"))
    shm_dir = Path("/dev/shm") / f"lorafaas-seq-{uuid.uuid4().hex[:8]}"
    settings = module_settings(root / "home", root / "run", shm_dir, demo_models,
                               runtime_image)
    try:
        upgrade(settings.database_url)
        credential = await ensure_guest(settings)
        client = TestClient(PlatformTestServer(create_app(settings)))
        await client.start_server()
        try:
            served = Platform(client, {"Authorization": aiohttp.encode_basic_auth(
                *credential.split(":", 1))}, credential, settings)
            await _actions(served, demo_models)
            yield served
        finally:
            await client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(shm_dir, ignore_errors=True)


async def _actions(platform: Platform, demo_models: Any) -> None:
    pirate, shout = zipped(demo_models.adapters["pirate"]), zipped(demo_models.adapters["shout"])
    web: dict[str, Any] = {
        "annotations": [{"key": "web-export", "value": True}, {"key": "final", "value": True}],
        "parameters": [{"key": "prompt", "value": "Ahoy"}, {"key": "max_tokens", "value": 2}]}
    actions: list[tuple[str, str, int, dict[str, Any]]] = [
        ("pirate", pirate, WAIT_MS, {}), ("shout", shout, WAIT_MS, {}),
        ("webby", pirate, WAIT_MS, web)]
    for name, code, timeout, extra in actions:
        status, body, _ = await platform.call("PUT", f"{ACTIONS}/{name}", json={
            "exec": {"kind": "lora", "binary": True, "code": code},
            "limits": {"timeout": timeout}, **extra})
        assert status == 200, body
    status, body, _ = await platform.call("PUT", f"{ACTIONS}/slow", json={
        "exec": {"kind": "python:3", "code": SLEEPS}, "limits": {"timeout": 100}})
    assert status == 200, body
    # Warm: a web action waits 60 s at most, as OpenWhisk's. Its parameters are final, so
    # it is invoked with none (an invoke naming one is refused, as OpenWhisk refuses it).
    status, body, _ = await invoke(platform, "pirate", {})
    assert status == 200, body
    status, body, _ = await platform.call("POST", f"{ACTIONS}/webby", json={},
                                          params={"blocking": "true", "timeout": str(WAIT_MS)})
    assert status == 200, body


async def invoke(platform: Platform, name: str,
                 parameters: dict[str, Any]) -> tuple[int, Any, Any]:
    """A blocking invocation that waits out any cold start."""
    return await platform.call("POST", f"{ACTIONS}/{name}", json={**PARAMETERS, **parameters},
                               params={"blocking": "true", "timeout": str(WAIT_MS)})


async def sequence(platform: Platform, name: str, components: list[str],
                   **extra: Any) -> tuple[int, Any]:
    """PUT a sequence; (status, body)."""
    status, body, _ = await platform.call("PUT", f"{ACTIONS}/{name}", json={
        "exec": {"kind": "sequence", "components": components}, **extra})
    return status, body


async def record(platform: Platform, activation_id: str) -> dict[str, Any]:
    """An activation record."""
    status, body, _ = await platform.call("GET", f"{ACTIVATIONS}/{activation_id}")
    assert status == 200, body
    return dict(body)


def annotations_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's annotations as a dict."""
    return {a["key"]: a["value"] for a in record["annotations"]}


async def test_a_sequence_of_two_lora_actions_feeds_one_text_to_the_next(
        platform: Platform) -> None:
    status, created = await sequence(platform, "chain", ["/_/pirate", "/guest/shout"])
    assert status == 200, created
    assert created["exec"] == {"kind": "sequence", "components": ["/guest/pirate",
                                                                   "/guest/shout"]}
    status, got, _ = await platform.call("GET", f"{ACTIONS}/chain")
    assert status == 200 and got["exec"] == created["exec"]

    status, outer, headers = await invoke(platform, "chain", {})
    assert status == 200, outer
    assert headers["x-openwhisk-activation-id"] == outer["activationId"]
    assert annotations_of(outer)["topmost"] is True and annotations_of(outer)["kind"] == "sequence"
    assert annotations_of(outer)["path"] == "guest/chain"
    assert annotations_of(outer)["limits"]["memory"] > 0
    assert "cause" not in outer
    first, second = [await record(platform, i) for i in outer["logs"]]
    assert (first["name"], second["name"]) == ("pirate", "shout")
    for component in (first, second):
        assert component["cause"] == outer["activationId"]
        assert annotations_of(component)["causedBy"] == "sequence"
        assert outer["start"] <= component["start"] <= component["end"] <= outer["end"]
    assert outer["duration"] == first["duration"] + second["duration"]  # as OpenWhisk's
    text = first["response"]["result"]["text"]
    assert annotations_of(second)["parameters"]["prompt"] == text  # the mapping of the README
    assert outer["response"] == second["response"] and outer["response"]["success"]

    await console_sign_in(platform)  # the console's function page lists the components
    response = await platform.client.get("/console/functions/chain")
    assert response.status == 200
    listed = Components()
    listed.feed(await response.text())
    assert listed.items == ["/guest/pirate", "/guest/shout"]
    shown = await platform.client.get(f"/console/activations/{outer['activationId']}")
    assert shown.status == 200, await shown.text()  # a record with no container's fields


class Components(HTMLParser):
    """The items of a function page's `components` list."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "ol" and dict(attrs).get("id") == "components":
            self._inside = True
        elif tag == "li" and self._inside:
            self.items.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "ol":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside and self.items:
            self.items[-1] += data.strip()


async def test_a_failing_component_ends_the_sequence_with_its_error(
        platform: Platform) -> None:
    assert (await sequence(platform, "broken", ["/_/slow", "/_/pirate"]))[0] == 200
    status, outer, _ = await invoke(platform, "broken", {})
    assert status == 502, outer
    (only,) = outer["logs"]  # pirate never ran
    failed = await record(platform, only)
    assert failed["name"] == "slow" and not failed["response"]["success"]
    assert outer["response"] == failed["response"] and "error" in failed["response"]["result"]


PREPARE = """def main(args):
    return {"prompt": "Translate: " + args["text"], "max_tokens": 6, "temperature": 0}
"""
FINISH = """def main(args):
    return {"answer": args["text"].strip().upper(), "finish": args["finish_reason"],
            "tokens": args["usage"]["completion_tokens"]}
"""
SLEEPS = """import time


def main(args):
    time.sleep(5)
    return {}
"""
RAISES = """def main(args):
    raise ValueError("no luck with " + args["text"])
"""


async def python_action(platform: Platform, name: str, code: str) -> None:
    """PUT a python:3 action from its source."""
    status, body, _ = await platform.call("PUT", f"{ACTIONS}/{name}", json={
        "exec": {"kind": "python:3", "code": code}, "limits": {"timeout": WAIT_MS}})
    assert status == 200, body


async def test_a_python_lora_python_sequence_records_as_openwhisk_s(platform: Platform) -> None:
    await python_action(platform, "prepare", PREPARE)
    await python_action(platform, "finish", FINISH)
    status, body = await sequence(platform, "translate", ["/_/prepare", "/_/pirate",
                                                          "/_/finish"])
    assert status == 200, body
    status, outer, _ = await platform.call("POST", f"{ACTIONS}/translate", json={
        "text": "hello"}, params={"blocking": "true", "timeout": str(WAIT_MS)})
    assert status == 200, outer

    # The same three by hand: each result is the next one's parameters.
    by_hand: dict[str, Any] = {"text": "hello"}
    for name in ("prepare", "pirate", "finish"):
        status, alone, _ = await platform.call("POST", f"{ACTIONS}/{name}", json=by_hand,
                                               params={"blocking": "true",
                                                       "timeout": str(WAIT_MS)})
        assert status == 200, alone
        by_hand = alone["response"]["result"]
    assert outer["response"] == {"status": "success", "statusCode": 0, "success": True,
                                 "result": by_hand}
    assert set(by_hand) == {"answer", "finish", "tokens"} and 0 < by_hand["tokens"] <= 6

    # The sequence's record: OpenWhisk's makeSequenceActivation.
    components = [await record(platform, i) for i in outer["logs"]]
    assert [c["name"] for c in components] == ["prepare", "pirate", "finish"]
    assert (outer["namespace"], outer["name"], outer["subject"]) == ("guest", "translate",
                                                                     "guest")
    assert "cause" not in outer
    memory = max(annotations_of(c)["limits"]["memory"] for c in components)
    assert outer["annotations"] == [
        {"key": "topmost", "value": True}, {"key": "path", "value": "guest/translate"},
        {"key": "kind", "value": "sequence"},
        {"key": "limits", "value": {"timeout": 60_000, "memory": memory, "logs": 10,
                                    "concurrency": 1}}]
    assert outer["duration"] == sum(c["duration"] for c in components)  # the time they ran
    assert outer["start"] <= components[0]["start"] and components[-1]["end"] <= outer["end"]
    # Each component's: caused by the sequence, in the caller's namespace, its own kind.
    for component, kind in zip(components, ("python:3", "lora", "python:3"), strict=True):
        notes = annotations_of(component)
        assert component["cause"] == outer["activationId"] and notes["causedBy"] == "sequence"
        assert notes["kind"] == kind and notes["path"] == f"guest/{component['name']}"
        assert component["namespace"] == "guest" and "topmost" not in notes
    assert annotations_of(components[1])["parameters"] == components[0]["response"]["result"]
    assert components[-1]["response"] == outer["response"]


async def test_a_component_failing_mid_way_ends_the_sequence(platform: Platform) -> None:
    await python_action(platform, "raises", RAISES)
    await python_action(platform, "finish2", FINISH)
    status, body = await sequence(platform, "midway", ["/_/pirate", "/_/raises", "/_/finish2"])
    assert status == 200, body
    status, outer, _ = await invoke(platform, "midway", {})
    assert status == 502, outer
    first, failed = [await record(platform, i) for i in outer["logs"]]  # finish2 never ran
    assert (first["name"], failed["name"]) == ("pirate", "raises")
    assert failed["response"]["statusCode"] == 1 and "no luck with" in \
        failed["response"]["result"]["error"]
    assert outer["response"] == failed["response"]
    assert outer["duration"] == first["duration"] + failed["duration"]
    _, listed, _ = await platform.call("GET", ACTIVATIONS, params={"name": "finish2"})
    assert listed == []


async def test_a_web_sequence_in_a_package_takes_a_json_body_and_its_packages_parameters(
        platform: Platform) -> None:
    status, body, _ = await platform.call("PUT", "/api/v1/namespaces/_/packages/tools", json={
        "parameters": [{"key": "max_tokens", "value": 2}, {"key": "temperature", "value": 0}]})
    assert status == 200, body
    status, body = await sequence(platform, "tools/relay", ["/_/pirate"], annotations=[
        {"key": "web-export", "value": True}])
    assert status == 200, body
    status, result, headers = await platform.call(
        "POST", "/api/v1/web/guest/tools/relay.json", auth=False, json={"prompt": "Ahoy"})
    assert status == 200, result
    assert result["usage"]["completion_tokens"] <= 2  # the package's max_tokens
    outer = await record(platform, headers["x-openwhisk-activation-id"])
    assert annotations_of(outer)["path"] == "guest/tools/relay"
    arguments = annotations_of(await record(platform, outer["logs"][0]))["parameters"]
    assert (arguments["prompt"], arguments["max_tokens"], arguments["temperature"]) == \
        ("Ahoy", 2, 0)
    assert arguments["__ow_method"] == "post"
    assert arguments["__ow_headers"]["content-type"] == "application/json"


async def test_a_published_sequence_runs_its_owner_s_components_for_another_namespace(
        platform: Platform) -> None:
    from lorafaas.admin import create_namespace_command

    status, body, _ = await platform.call("PUT", "/api/v1/namespaces/_/packages/pub",
                                          json={"publish": True})
    assert status == 200, body
    # `/guest/pirate` is in guest's default package, which carol may not read herself.
    status, body = await sequence(platform, "pub/chain", ["/guest/pirate"])
    assert status == 200, body
    carol = await asyncio.to_thread(create_namespace_command, platform.settings, "carol")
    auth = {"Authorization": aiohttp.encode_basic_auth(*carol.split(":", 1))}
    status, body, _ = await platform.call(
        "POST", "/api/v1/namespaces/guest/actions/pub/chain", auth=False, headers=auth,
        json=PARAMETERS, params={"blocking": "true", "timeout": str(WAIT_MS)})
    assert status == 200, body
    assert body["namespace"] == "carol" and body["response"]["success"], body
    assert "text" in body["response"]["result"] and len(body["logs"]) == 1, body
    status, body, _ = await platform.call("POST", "/api/v1/namespaces/guest/actions/pirate",
                                          auth=False, headers=auth, json=PARAMETERS)
    assert status == 403, body  # the component itself stays guest's


@pytest.mark.parametrize(("components", "message"), [
    (["/_/pirate", "/_/nothing"], "Sequence component does not exist."),
    (["/_/pirate", "/_/loop"], "Sequence may not refer to itself."),
    ([], "No component specified for the sequence."),
    (["pirate"], "must contain at least the namespace and the name"),
])
async def test_refused_sequences_name_the_problem_and_leave_nothing(
        platform: Platform, components: list[str], message: str) -> None:
    status, body = await sequence(platform, "loop", components)
    # OpenWhisk's messages word for word; a malformed name is named in ours.
    exact = body["error"] == message if message.endswith(".") else message in body["error"]
    assert status == 400 and exact, body
    status, _, _ = await platform.call("GET", f"{ACTIONS}/loop")
    assert status == 404
    _, listed, _ = await platform.call("GET", ACTIONS)
    assert "loop" not in {a["name"] for a in listed}


async def test_a_web_action_answers_json_text_and_http_without_a_key(
        platform: Platform) -> None:
    status, result, headers = await platform.call("GET", f"{WEB}/webby.json", auth=False)
    assert status == 200 and set(result) >= {"text", "finish_reason", "usage"}, result
    assert headers["Access-Control-Allow-Origin"] == "*"
    status, text, headers = await platform.call("GET", f"{WEB}/webby.text", auth=False)
    assert status == 200 and text == result["text"]  # greedy: the same two tokens
    assert headers["Content-Type"].startswith("text/plain")
    status, usage, _ = await platform.call("POST", f"{WEB}/webby.json/usage", auth=False)
    assert status == 200 and usage["completion_tokens"] <= 2
    status, empty, _ = await platform.call("GET", f"{WEB}/webby.http", auth=False)
    assert status == 204 and empty == ""  # a result with no `body`
    status, _, headers = await platform.call("OPTIONS", f"{WEB}/webby.json", auth=False)
    assert status == 200 and "POST" in headers["Access-Control-Allow-Methods"]

    _, _, headers = await platform.call("GET", f"{WEB}/webby.json", auth=False,
                                        params={"who": "me"})
    activation_id = headers["x-openwhisk-activation-id"]
    arguments = annotations_of(await record(platform, activation_id))["parameters"]
    assert arguments["__ow_method"] == "get" and arguments["__ow_path"] == ""
    assert arguments["who"] == "me" and "__ow_user" not in arguments
    assert "authorization" not in arguments["__ow_headers"]


@pytest.mark.parametrize(("path", "status", "message"), [
    (f"{WEB}/pirate.json", 404, "does not exist"),  # not exported
    ("/api/v1/web/nobody/default/webby.json", 404, "does not exist"),
    ("/api/v1/web/guest/pkg/webby.json", 404, "does not exist"),
    (f"{WEB}/webby.json/nothing", 404, "does not include requested property"),
    (f"{WEB}/webby.json?prompt=override", 400, "not allowed"),  # final
    (f"{WEB}/webby.json?__ow_user=me", 400, "not allowed"),
    (f"{WEB}/webby.html", 404, "does not include requested property"),
])
async def test_web_action_errors_as_openwhisk_answers_them(
        platform: Platform, path: str, status: int, message: str) -> None:
    answered, body, _ = await platform.call("GET", path, auth=False)
    assert answered == status and message in body["error"], body


async def test_require_whisk_auth_asks_for_a_key_or_a_secret(platform: Platform) -> None:
    keyed = [{"key": "web-export", "value": True}, {"key": "require-whisk-auth", "value": True}]
    assert (await sequence(platform, "keyed", ["/_/webby"], annotations=keyed))[0] == 200
    status, body, _ = await platform.call("GET", f"{WEB}/keyed.json", auth=False)
    assert status == 401, body
    status, result, headers = await platform.call("GET", f"{WEB}/keyed.json")
    assert status == 200 and "text" in result, result
    outer = await record(platform, headers["x-openwhisk-activation-id"])
    component = await record(platform, outer["logs"][0])
    assert annotations_of(component)["parameters"]["__ow_user"] == "guest"

    secret = [{"key": "web-export", "value": True},
              {"key": "require-whisk-auth", "value": "s3cret"}]
    assert (await sequence(platform, "secret", ["/_/webby"], annotations=secret))[0] == 200
    for headers, expected in (({}, 401), ({"X-Require-Whisk-Auth": "wrong"}, 401),
                              ({"X-Require-Whisk-Auth": "s3cret"}, 200)):
        status, body, _ = await platform.call("GET", f"{WEB}/secret.text", auth=False,
                                              headers=headers)
        assert status == expected, body
