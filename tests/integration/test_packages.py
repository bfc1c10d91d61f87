"""Packages as an OpenWhisk user drives them, on one platform for the module: an action in a
package invoked by REST, CLI and the OpenAI API; a binding of another namespace to a shared
package, invoked through it (recorded and billed in the caller's namespace); refusals as
4xx JSON that leave nothing behind."""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from lorafaas.admin import create_namespace_command
from lorafaas.cli import main
from tests.integration.served import ServedPlatform, served_platform

pytestmark = pytest.mark.docker
NS = "/api/v1/namespaces/_"
PROMPT = "Tell me about the sea."


def zipped(folder: Path) -> bytes:
    """The adapter folder as a zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            archive.writestr(path.name, path.read_bytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_models: Any, runtime_image: str,
           ) -> Iterator[ServedPlatform]:
    """The platform with the guest's shared package `sea` (parameters max_tokens 3 and
    temperature 0) holding `pirate` (parameter max_tokens 4, which wins over the package's)."""
    with served_platform(tmp_path_factory.mktemp("home"), demo_models,
                         runtime_image) as platform:
        status, body = platform.request("PUT", f"{NS}/packages/sea", {
            "publish": True, "parameters": [{"key": "max_tokens", "value": 3},
                                            {"key": "temperature", "value": 0}]})
        assert status == 200, body
        code = base64.b64encode(zipped(demo_models.adapters["pirate"])).decode()
        platform.pirate_code = code  # type: ignore[attr-defined]
        status, body = platform.request("PUT", f"{NS}/actions/sea/pirate", {
            "exec": {"kind": "lora", "binary": True, "code": code},
            "parameters": [{"key": "max_tokens", "value": 4}], "limits": {"max_tokens": 8}})
        assert status == 200, body
        yield platform


@pytest.fixture(scope="module")
def bob(served: ServedPlatform) -> str:
    """Another namespace's credential."""
    return create_namespace_command(served.settings, "bob")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `lorafaas ARGV`."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def annotation(record: dict[str, Any], key: str) -> Any:
    """One annotation's value of a record."""
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


def test_package_crud_and_its_actions(served: ServedPlatform) -> None:
    status, package = served.request("GET", f"{NS}/packages/sea")
    assert status == 200, package
    assert (package["namespace"], package["name"], package["publish"]) == ("guest", "sea", True)
    assert package["binding"] == {}
    assert [(a["name"], a["namespace"]) for a in package["actions"]] == [("pirate", "guest/sea")]
    status, action = served.request("GET", f"{NS}/actions/sea/pirate?code=false")
    assert status == 200 and action["namespace"] == "guest/sea" and action["name"] == "pirate"
    listed = served.request("GET", f"{NS}/packages")[1]
    assert [p["name"] for p in listed] == ["sea"] and "parameters" not in listed[0]

    # An update keeps what it does not send, and bumps the version.
    status, updated = served.request("PUT", f"{NS}/packages/sea?overwrite=true",
                                     {"annotations": [{"key": "description", "value": "s"}]})
    assert status == 200 and updated["version"] == "0.0.2" and updated["publish"] is True
    assert [p["key"] for p in updated["parameters"]] == ["max_tokens", "temperature"]

    status, refused = served.request("DELETE", f"{NS}/packages/sea")
    assert status == 409 and refused["error"] == "Package not empty (contains 1 entity)"
    assert served.request("GET", f"{NS}/packages/sea")[0] == 200  # still there
    status, refused = served.request("PUT", f"{NS}/packages/default", {})
    assert status == 400 and "reserved" in refused["error"]
    status, refused = served.request("PUT", f"{NS}/actions/nowhere/pirate", {
        "exec": {"kind": "lora", "binary": True, "code": served.pirate_code}})  # type: ignore[attr-defined]
    assert status == 404 and "error" in refused
    assert served.request("GET", f"{NS}/packages/nowhere")[0] == 404

    assert served.request("PUT", f"{NS}/packages/empty", {})[0] == 200
    assert served.request("DELETE", f"{NS}/packages/empty")[0] == 200
    assert served.request("GET", f"{NS}/packages/empty")[0] == 404


def test_action_in_a_package_by_rest_cli_and_openai(served: ServedPlatform, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    status, record = served.request("POST", f"{NS}/actions/sea/pirate?blocking=true",
                                    {"prompt": PROMPT, "seed": 1})
    assert status == 200, record
    assert (record["namespace"], record["name"]) == ("guest", "pirate")
    assert annotation(record, "path") == "guest/sea/pirate"
    # package < action < invocation: the action's max_tokens over the package's 3.
    assert annotation(record, "parameters") == {"max_tokens": 4, "temperature": 0,
                                                "prompt": PROMPT, "seed": 1}
    assert 0 < record["response"]["result"]["usage"]["completion_tokens"] <= 4

    monkeypatch.setenv("LORAFAAS_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("LORAFAAS_APIHOST", served.url)
    monkeypatch.setenv("LORAFAAS_AUTH", served.credential)
    code, out, err = run_cli(capsys, "action", "invoke", "sea/pirate", "-p", "prompt", PROMPT,
                             "-p", "seed", "1", "--result")
    assert code == 0, err
    cli_result = json.loads(out)
    assert cli_result["text"] == record["response"]["result"]["text"]

    with openai.OpenAI(base_url=served.url + "/v1", api_key=served.credential,
                       max_retries=0) as client:
        completion = client.completions.create(model="sea/pirate", prompt=PROMPT, seed=1,
                                               max_tokens=4, temperature=0)
        assert completion.choices[0].text == record["response"]["result"]["text"]
        models = [m.id for m in client.models.list()]
        assert "guest/sea/pirate" in models
        with pytest.raises(openai.NotFoundError, match="'sea/nobody'"):
            client.completions.create(model="sea/nobody", prompt="hi")


def test_cli_package_verbs(served: ServedPlatform, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LORAFAAS_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("LORAFAAS_APIHOST", served.url)
    monkeypatch.setenv("LORAFAAS_AUTH", served.credential)

    def cli(*argv: str) -> tuple[int, str, str]:
        return run_cli(capsys, *argv)

    assert cli("package", "create", "tools", "-p", "greeting", "ahoy", "--shared", "no") == \
        (0, "ok: created package tools\n", "")
    code, _, err = cli("package", "create", "tools")
    assert code == 1 and "resource already exists" in err
    assert cli("package", "update", "tools", "--shared", "yes")[0] == 0
    code, out, _ = cli("package", "get", "tools", "--summary")
    assert (code, out) == (0, "package /guest/tools\n   (parameters: greeting)\n")
    assert cli("package", "bind", "tools", "mytools", "-p", "greeting", "hi") == \
        (0, "ok: created binding mytools\n", "")
    code, out, _ = cli("--json", "package", "get", "mytools")
    got = json.loads(out)
    assert got["binding"] == {"namespace": "guest", "name": "tools"}
    assert got["parameters"] == [{"key": "greeting", "value": "hi"}]
    code, out, _ = cli("package", "list")
    assert code == 0 and out.splitlines()[0] == "packages"
    assert {line.split()[0] for line in out.splitlines()[1:]} >= {"/guest/tools",
                                                                "/guest/mytools"}
    assert cli("package", "delete", "mytools") == (0, "ok: deleted package mytools\n", "")
    assert cli("package", "delete", "tools") == (0, "ok: deleted package tools\n", "")
    code, _, err = cli("package", "get", "a/b")
    assert code == 1 and "not a package name" in err


def test_binding_from_another_namespace_runs_there(served: ServedPlatform, bob: str) -> None:
    bob_ns = "/api/v1/namespaces/bob"
    status, binding = served.request("PUT", f"{bob_ns}/packages/ocean", {
        "binding": {"namespace": "guest", "name": "sea"},
        "parameters": [{"key": "temperature", "value": 0.0}, {"key": "top_p", "value": 1.0}]},
        credential=bob)
    assert status == 200, binding
    assert binding["binding"] == {"namespace": "guest", "name": "sea"}
    assert annotation(binding, "binding") == {"namespace": "guest", "name": "sea"}
    status, seen = served.request("GET", f"{bob_ns}/packages/ocean", credential=bob)
    assert status == 200 and [a["name"] for a in seen["actions"]] == ["pirate"]

    status, record = served.request("POST", f"{bob_ns}/actions/ocean/pirate?blocking=true",
                                    {"prompt": PROMPT}, credential=bob)
    assert status == 200, record
    assert record["namespace"] == "bob" and record["subject"] == "bob"
    assert annotation(record, "path") == "guest/sea/pirate"
    assert annotation(record, "binding") == "bob/ocean"
    # package < binding < action < invocation
    assert annotation(record, "parameters") == {"max_tokens": 4, "temperature": 0.0,
                                                "top_p": 1.0, "prompt": PROMPT}
    activation_id = record["activationId"]
    assert served.request("GET", f"{bob_ns}/activations/{activation_id}",
                          credential=bob)[0] == 200
    assert served.request("GET", f"{NS}/activations/{activation_id}")[0] == 404
    usage = served.request("GET", f"{bob_ns}/usage", credential=bob)[1]
    assert "ocean/pirate" in {group["key"] for group in usage["groups"]}, usage
    guest_usage = served.request("GET", f"{NS}/usage")[1]
    assert activation_id not in {a.get("activationId") for a in guest_usage["activations"]}

    # Writing into a binding is refused; an unshared package cannot be bound or reached.
    status, refused = served.request("DELETE", f"{bob_ns}/actions/ocean/pirate", credential=bob)
    assert status == 400 and refused["error"] == "Operation not permitted on package binding."
    assert served.request("PUT", f"{NS}/packages/sea?overwrite=true", {"publish": False})[0] \
        == 200
    try:
        status, refused = served.request("PUT", f"{bob_ns}/packages/closed", {
            "binding": {"namespace": "guest", "name": "sea"}}, credential=bob)
        assert status == 403 and "guest/sea" in refused["error"]
        assert served.request("GET", f"{bob_ns}/packages/closed", credential=bob)[0] == 404
        status, _ = served.request("POST", f"{bob_ns}/actions/ocean/pirate?blocking=true",
                                   {"prompt": PROMPT}, credential=bob)
        assert status == 404
    finally:
        served.request("PUT", f"{NS}/packages/sea?overwrite=true", {"publish": True})


def stored_record(served: ServedPlatform, activation_id: str) -> dict[str, Any]:
    """An activation's record once stored (a non-blocking one is stored when it ends)."""
    for _ in range(600):
        status, body = served.request("GET", f"{NS}/activations/{activation_id}")
        if status == 200:
            return body  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"activation {activation_id} was never stored")


def test_sequences_rules_and_web_actions_name_a_packages_action(served: ServedPlatform) -> None:
    # A sequence of the package's action, itself a web action of the package.
    status, body = served.request("PUT", f"{NS}/actions/sea/shanty", {
        "exec": {"kind": "sequence", "components": ["/_/sea/pirate"]},
        "annotations": [{"key": "web-export", "value": True}]})
    assert status == 200, body
    assert body["exec"]["components"] == ["/guest/sea/pirate"]
    status, record = served.request("POST", f"{NS}/actions/sea/shanty?blocking=true",
                                    {"prompt": PROMPT})
    assert status == 200, record
    assert annotation(record, "path") == "guest/sea/shanty"
    component = stored_record(served, record["logs"][0])
    assert annotation(component, "path") == "guest/sea/pirate"
    assert annotation(component, "parameters")["temperature"] == 0  # the package's
    status, body = served.request("GET", "/api/v1/web/guest/sea/shanty.json?prompt=Ahoy")
    assert status == 200, body
    assert isinstance(body["text"], str) and 0 < body["usage"]["completion_tokens"] <= 4
    status, refused = served.request("GET", "/api/v1/web/guest/default/shanty.json")
    assert status == 404, refused  # not in the default package
    status, refused = served.request("GET", "/api/v1/web/guest/sea/pirate.json")
    assert status == 404, refused  # not exported

    # A rule of `sea/pirate`: the trigger's record names the run it caused.
    assert served.request("PUT", f"{NS}/triggers/tide", {})[0] == 200
    status, body = served.request("PUT", f"{NS}/rules/ebb", {"trigger": "tide",
                                                             "action": "sea/pirate"})
    assert status == 200, body
    status, fired = served.request("POST", f"{NS}/triggers/tide", {"prompt": PROMPT})
    assert status == 202, fired
    (line,) = (json.loads(text) for text in stored_record(served, fired["activationId"])["logs"])
    assert (line["action"], line["statusCode"], line["success"]) == ("guest/sea/pirate", 0, True)
    record = stored_record(served, line["activationId"])
    assert annotation(record, "path") == "guest/sea/pirate"
    assert annotation(record, "parameters") == {"max_tokens": 4, "temperature": 0,
                                                "prompt": PROMPT}
    for path in ("rules/ebb", "triggers/tide", "actions/sea/shanty"):
        assert served.request("DELETE", f"{NS}/{path}")[0] == 200


def test_refused_packages_name_the_problem(served: ServedPlatform, bob: str) -> None:
    bob_ns = "/api/v1/namespaces/bob"
    cases = [
        ({"binding": {"namespace": "guest", "name": "absent"}}, 400, "does not exist"),
        ({"binding": {"namespace": "bad name!", "name": "x"}}, 400, "binding.namespace"),
        ({"binding": {"namespace": "guest"}}, 400, "'binding'"),
        ({"publish": "yes"}, 400, "'publish'"),
        ({"parameters": {"a": 1}}, 400, "'parameters'"),
        ({"exec": {}}, 400, "unknown field 'exec'"),
    ]
    for body, status, names in cases:
        answered, error = served.request("PUT", f"{bob_ns}/packages/broken", body,
                                         credential=bob)
        assert (answered, names in error.get("error", "")) == (status, True), (body, error)
    assert served.request("PUT", f"{bob_ns}/packages/chain", {
        "binding": {"namespace": "guest", "name": "sea"}}, credential=bob)[0] == 200
    answered, error = served.request("PUT", f"{bob_ns}/packages/chain2", {
        "binding": {"namespace": "_", "name": "chain"}}, credential=bob)
    assert (answered, error["error"]) == (400, "Cannot bind to another package binding.")
    assert served.request("PUT", f"{bob_ns}/packages/plain", {}, credential=bob)[0] == 200
    answered, error = served.request("PUT", f"{bob_ns}/packages/plain?overwrite=true", {
        "binding": {"namespace": "guest", "name": "sea"}}, credential=bob)
    assert (answered, error["error"]) == (
        409, "Resource is a package and cannot be converted into a binding.")
    answered, error = served.request("PUT", f"{NS}/packages/bad%20name%20", {})
    assert answered == 400 and "name" in error["error"]
    # Another namespace's list: its published packages alone, as OpenWhisk's public view.
    answered, shared = served.request("GET", "/api/v1/namespaces/guest/packages",
                                      credential=bob)
    assert answered == 200 and shared and all(p["publish"] for p in shared), shared
    listed = [p["name"] for p in served.request("GET", f"{bob_ns}/packages", credential=bob)[1]]
    assert sorted(listed) == ["chain", "ocean", "plain"]  # nothing of the refused ones
    for name in ("chain", "plain"):
        assert served.request("DELETE", f"{bob_ns}/packages/{name}", credential=bob)[0] == 200


def test_a_shared_packages_action_runs_for_another_namespace_by_its_full_name(
        served: ServedPlatform, bob: str) -> None:
    # OpenWhisk's entitlement: an action of a published package may be read and activated
    # by any subject, without a binding; it runs, is recorded and is billed for the caller.
    shared = "/api/v1/namespaces/guest/actions/sea/pirate"
    status, shown = served.request("GET", f"{shared}?code=false", credential=bob)
    assert status == 200, shown
    assert (shown["namespace"], shown["name"], shown["exec"]["kind"]) == ("guest/sea", "pirate",
                                                                         "lora")
    status, record = served.request("POST", f"{shared}?blocking=true", {"prompt": PROMPT},
                                    credential=bob)
    assert status == 200, record
    assert (record["namespace"], record["name"], record["subject"]) == ("bob", "pirate", "bob")
    assert annotation(record, "path") == "guest/sea/pirate"
    assert annotation(record, "binding") is None
    assert annotation(record, "parameters") == {"max_tokens": 4, "temperature": 0,
                                                "prompt": PROMPT}  # package < action < call
    activation_id = record["activationId"]
    bob_ns = "/api/v1/namespaces/bob"
    assert served.request("GET", f"{bob_ns}/activations/{activation_id}",
                          credential=bob)[0] == 200
    assert served.request("GET", f"{NS}/activations/{activation_id}")[0] == 404
    usage = served.request("GET", f"{bob_ns}/usage", credential=bob)[1]
    assert "guest/sea/pirate" in {group["key"] for group in usage["groups"]}, usage
    guest_usage = served.request("GET", f"{NS}/usage")[1]
    assert activation_id not in {a.get("activationId") for a in guest_usage["activations"]}

    # A published package reads and lists for anyone; another is a 403, absent or not.
    guest_ns = "/api/v1/namespaces/guest"
    assert served.request("PUT", f"{NS}/packages/private", {})[0] == 200
    status, package = served.request("GET", f"{guest_ns}/packages/sea", credential=bob)
    assert status == 200, package
    assert (package["namespace"], package["publish"]) == ("guest", True)
    assert [(a["name"], a["namespace"]) for a in package["actions"]] == [("pirate", "guest/sea")]
    status, listed = served.request("GET", f"{guest_ns}/packages", credential=bob)
    assert status == 200 and {p["name"] for p in listed} == {"sea"}, listed
    assert "private" in {p["name"] for p in served.request("GET", f"{NS}/packages")[1]}
    for name in ("private", "absent"):
        assert served.request("GET", f"{guest_ns}/packages/{name}", credential=bob)[0] == 403
    assert served.request("DELETE", f"{guest_ns}/packages/private", credential=bob)[0] == 403
    assert served.request("DELETE", f"{NS}/packages/private")[0] == 200

    # What the entitlement does not grant: 403, whether or not the entity exists.
    for method, path in (("POST", "actions/sea/absent"), ("GET", "actions/pirate"),
                         ("POST", "actions/nopkg/pirate"), ("GET", "actions"),
                         ("DELETE", "actions/sea/pirate")):
        status, refused = served.request(method, f"{guest_ns}/{path}", {} if method == "POST"
                                         else None, credential=bob)
        expected = 404 if path == "actions/sea/absent" else 403  # absent from a shared one
        assert status == expected, (method, path, refused)
    assert served.request("PUT", f"{NS}/packages/sea?overwrite=true", {"publish": False})[0] \
        == 200
    try:
        status, refused = served.request("POST", f"{shared}?blocking=true", {"prompt": PROMPT},
                                         credential=bob)
        assert status == 403 and "/guest/sea/pirate" in refused["error"], refused
        assert served.request("GET", shared, credential=bob)[0] == 403
    finally:
        served.request("PUT", f"{NS}/packages/sea?overwrite=true", {"publish": True})
