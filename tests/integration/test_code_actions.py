"""Code actions (`python:3`) and lora handlers on the real platform: OpenWhisk's Python
action protocol in the hardened runtime containers without a backbone, and a handler whose
`llm` calls run with its own adapter in its own container (never a namespace container)."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.integration.served import ServedPlatform, served_platform

pytestmark = pytest.mark.docker
ACTIONS = "/api/v1/namespaces/_/actions"
HELLO = """import os, sys

def main(args):
    print("hello from stdout")
    print("hello from stderr", file=sys.stderr)
    return {"greeting": "hello " + args.get("name", "world"),
            "activation": os.environ.get("__OW_ACTIVATION_ID"),
            "action": os.environ.get("__OW_ACTION_NAME"),
            "namespace": os.environ.get("__OW_NAMESPACE")}
"""
HANDLER = """def main(args, llm):
    first = llm(args["prompt"], max_tokens=6, temperature=0)
    second = llm(first["text"] + " Then", max_tokens=6, temperature=0)
    print("two calls made")
    return {"first": first, "second": second}
"""


def zip_of(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_models: Any,
           runtime_image: str) -> Iterator[ServedPlatform]:
    """The platform with namespace containers on (every lora function that may share
    does), and slow starts allowed on a busy machine."""
    with served_platform(tmp_path_factory.mktemp("home"), demo_models, runtime_image,
                         shared_containers="namespace", namespace_memory_mb=2048,
                         shared_own_at=1000.0, shared_share_at=999.0,
                         container_start_timeout_s=300) as platform:
        yield platform


def put(served: ServedPlatform, name: str, body: dict[str, Any], status: int = 200) -> Any:
    code, answer = served.request("PUT", f"{ACTIONS}/{name}", body)
    assert code == status, answer
    return answer


def invoke(served: ServedPlatform, name: str, params: dict[str, Any]) -> tuple[int, Any]:
    """A blocking invocation's status and record."""
    return served.request("POST", f"{ACTIONS}/{name}?blocking=true&timeout=300000", params)


def notes(record: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in record["annotations"]}


def test_a_python_action_from_source_runs_as_openwhisk_s(served: ServedPlatform) -> None:
    created = put(served, "hello", {"exec": {"kind": "python:3", "code": HELLO}})
    assert created["exec"]["kind"] == "python:3" and created["exec"]["binary"] is False
    assert created["limits"] == {"timeout": 60_000, "concurrency": 1, "memory": 256, "logs": 10}
    _, shown = served.request("GET", f"{ACTIONS}/hello")
    assert shown["exec"]["code"] == HELLO  # the source as sent
    status, record = invoke(served, "hello", {"name": "ann"})
    assert status == 200, record
    assert record["response"]["statusCode"] == 0 and record["response"]["success"]
    assert record["response"]["result"] == {
        "greeting": "hello ann", "activation": record["activationId"], "action": "hello",
        "namespace": "guest"}
    assert any(line.endswith("hello from stdout") for line in record["logs"])
    assert any(line.endswith("hello from stderr") for line in record["logs"])
    annotations = notes(record)
    assert annotations["kind"] == "python:3" and annotations["container"] == "function"
    cost = annotations["cost"]
    assert cost["measure"] == "duration" and cost["acceleratorSeconds"] == 0
    assert cost["promptTokens"] == 0 and cost["gbSeconds"] > 0
    # Warm: the same container again, with only its own activation's lines.
    status, again = invoke(served, "hello", {})
    assert status == 200 and notes(again)["startKind"] == "warm"
    assert again["response"]["result"]["greeting"] == "hello world"
    assert sum("hello from stdout" in line for line in again["logs"]) == 1


def test_its_container_is_hardened_and_has_no_backbone(served: ServedPlatform) -> None:
    put(served, "inspect", {"exec": {"kind": "python:3", "code": HELLO},
                            "limits": {"memory": 300}})
    assert invoke(served, "inspect", {})[0] == 200
    _, shown = served.request("GET", f"{ACTIONS}/inspect")
    (instance,) = shown["instances"]
    client = docker.from_env()
    try:
        attrs = client.containers.get(instance["container"]).attrs
    finally:
        client.close()
    host = attrs["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["Memory"] == 300 * 1024 * 1024 and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    mounts = {m["Destination"]: m["RW"] for m in attrs["Mounts"]}
    assert mounts == {"/lorafaas/io": True, "/code": False}  # no backbone, no channel
    assert attrs["Config"]["User"] == "65534:65534"


def test_a_python_action_from_a_zip_with_its_own_modules(served: ServedPlatform) -> None:
    code = zip_of({"__main__.py": b"from helpers.text import shout\n\n"
                                  b"def handle(args):\n    return {'said': shout(args['w'])}\n",
                   "helpers/__init__.py": b"", "helpers/text.py":
                   b"def shout(word):\n    return word.upper() + '!'\n"})
    created = put(served, "zipped", {"exec": {"kind": "python:default", "code": code,
                                              "binary": True, "main": "handle"}})
    assert created["exec"]["kind"] == "python:3" and created["exec"]["main"] == "handle"
    status, record = invoke(served, "zipped", {"w": "hey"})
    assert status == 200, record
    assert record["response"]["result"] == {"said": "HEY!"}


def test_an_exception_is_an_application_error_with_its_traceback(
        served: ServedPlatform) -> None:
    put(served, "raises", {"exec": {"kind": "python:3", "code":
                                    "def main(args):\n    raise ValueError('no luck')\n"}})
    status, record = invoke(served, "raises", {})
    assert status == 502, record
    assert record["response"] == {"status": "application error", "statusCode": 1,
                                  "success": False, "result": {"error": "no luck"}}
    assert any("Traceback" in line for line in record["logs"])
    assert any("ValueError: no luck" in line for line in record["logs"])


def test_a_result_that_is_no_dictionary_is_a_developer_error(served: ServedPlatform) -> None:
    put(served, "rebel", {"exec": {"kind": "python:3", "code":
                                   "def main(args):\n    return 'rebel'\n"}})
    status, record = invoke(served, "rebel", {})
    assert status == 502, record
    assert record["response"] == {
        "status": "action developer error", "statusCode": 2, "success": False,
        "result": {"error": "The action did not return a dictionary."}}


def test_nodejs_is_refused_naming_the_kinds_served(served: ServedPlatform) -> None:
    refused = put(served, "node", {"exec": {"kind": "nodejs:20", "code":
                                            "function main() { return {} }"}}, status=400)
    assert "the kinds served are: lora, python:3 (also python:default)" in refused["error"]
    assert served.request("GET", f"{ACTIONS}/node")[0] == 404  # nothing left behind


def test_a_handler_calls_its_own_adapter_and_never_shares(
        served: ServedPlatform, demo_models: Any) -> None:
    folder = demo_models.adapters["pirate"]
    adapter = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    put(served, "plain", {"exec": {"kind": "lora", "binary": True, "code": zip_of(adapter)}})
    put(served, "handled", {"exec": {"kind": "lora", "binary": True, "code": zip_of(
        {**adapter, "__main__.py": HANDLER.encode()})}})
    status, record = invoke(served, "handled", {"prompt": "Ahoy, where is the"})
    assert status == 200, record
    result = record["response"]["result"]
    assert any(line.endswith("two calls made") for line in record["logs"])
    # By hand: the same two calls of the function without a handler.
    status, first = invoke(served, "plain", {"prompt": "Ahoy, where is the", "max_tokens": 6,
                                             "temperature": 0})
    assert status == 200, first
    status, second = invoke(served, "plain", {"prompt": first["response"]["result"]["text"]
                                              + " Then", "max_tokens": 6, "temperature": 0})
    assert status == 200, second
    assert result == {"first": first["response"]["result"],
                      "second": second["response"]["result"]}
    # The plain function shares its namespace's container; the handler never does.
    assert notes(first)["container"] == "namespace"
    annotations = notes(record)
    assert annotations["container"] == "function"
    _, shown = served.request("GET", f"{ACTIONS}/handled")
    assert len(shown["instances"]) == 1  # its own container
