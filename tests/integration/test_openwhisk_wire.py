"""What is served, on the wire, as OpenWhisk's controller answers it: `binary` inferred,
kinds in any case, the stored entity answered, updates merged, `count`, `final`, the log
limit, a time-out as 502 with its record, CORS and OPTIONS, trailing slashes, the API's
info and a namespace's limits. One platform serves the module (tests.integration.served).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.served import ServedPlatform, served_platform

pytestmark = pytest.mark.docker
ACTIONS = "/api/v1/namespaces/_/actions"
ACTIVATIONS = "/api/v1/namespaces/_/activations"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo_models: Any,
           runtime_image: str) -> Iterator[ServedPlatform]:
    """The platform on 127.0.0.1 for the whole module."""
    with served_platform(tmp_path_factory.mktemp("home"), demo_models,
                         runtime_image) as platform:
        yield platform


@pytest.fixture(scope="module")
def code(demo_models: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The pirate adapter's zip, as base64."""
    path = tmp_path_factory.mktemp("zips") / "pirate.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(p for p in demo_models.adapters["pirate"].iterdir() if p.is_file()):
            archive.write(file, file.name)
    return base64.b64encode(path.read_bytes()).decode()


def call(served: ServedPlatform, method: str, path: str, body: Any = None,
         status: int = 200) -> Any:
    """A JSON request with the guest's key; its body, after checking the status."""
    got, answer = served.request(method, path, body)
    assert got == status, answer
    return answer


def raw(served: ServedPlatform, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """A request without credentials: status, headers and body."""
    request = urllib.request.Request(served.url + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def test_binary_is_inferred_and_the_create_answers_the_stored_entity(
        served: ServedPlatform, code: str) -> None:
    created = call(served, "PUT", f"{ACTIONS}/inferred",
                   {"exec": {"kind": " LoRA", "code": code, "binary": False},
                    "limits": {"logs": 5}})
    assert created["exec"]["kind"] == "lora" and created["exec"]["binary"] is True
    assert created["exec"]["code"] == code and created["limits"]["logs"] == 5
    refused = call(served, "PUT", f"{ACTIONS}/plain",
                   {"exec": {"kind": "lora", "code": "not base64!"}}, status=400)
    assert "base64" in refused["error"]
    over = call(served, "PUT", f"{ACTIONS}/logs",
                {"exec": {"kind": "lora", "code": code}, "limits": {"logs": 11}}, status=400)
    assert "logs 11 MB exceeds allowed threshold of 10 MB" in over["error"]
    call(served, "PUT", f"{ACTIONS}/noexec", {"parameters": []}, status=400)
    call(served, "GET", f"{ACTIONS}/noexec", status=404)  # a refused create leaves nothing


def test_an_update_merges_and_keeps_the_artifact(served: ServedPlatform, code: str) -> None:
    first = call(served, "PUT", f"{ACTIONS}/merged", {
        "exec": {"kind": "lora", "code": code}, "parameters": [{"key": "max_tokens",
                                                                 "value": 3}],
        "annotations": [{"key": "note", "value": "kept"}],
        "limits": {"timeout": 30_000, "memory": 1024}})
    updated = call(served, "PUT", f"{ACTIONS}/merged?overwrite=true",
                   {"limits": {"timeout": 45_000}})
    assert updated["version"] == "0.0.2"
    assert updated["exec"]["digest"] == first["exec"]["digest"]
    assert updated["exec"]["code"] == code
    assert updated["limits"] == {**first["limits"], "timeout": 45_000}
    assert updated["parameters"] == first["parameters"]
    assert {"key": "note", "value": "kept"} in updated["annotations"]
    adapter = next(a for a in first["annotations"] if a["key"] == "adapter")
    assert adapter in updated["annotations"]
    versions = call(served, "GET", f"{ACTIONS}/merged/versions")
    assert [v["exec"]["digest"] for v in versions] == [first["exec"]["digest"]] * 2
    call(served, "DELETE", f"{ACTIONS}/merged")
    call(served, "PUT", f"{ACTIONS}/again", {"exec": {"kind": "lora", "code": code}})


def test_counts_final_parameters_and_trailing_slashes(served: ServedPlatform,
                                                      code: str) -> None:
    call(served, "PUT", f"{ACTIONS}/final", {
        "exec": {"kind": "lora", "code": code},
        "parameters": [{"key": "max_tokens", "value": 2}],
        "annotations": [{"key": "final", "value": True}]})
    refused = call(served, "POST", f"{ACTIONS}/final?blocking=true",
                   {"prompt": "Ahoy", "max_tokens": 3}, status=400)
    assert refused["error"] == ("Request defines parameters that are not allowed (e.g., "
                                "reserved properties).")
    record = call(served, "POST", f"{ACTIONS}/final?blocking=true&timeout=600000",
                  {"prompt": "Ahoy"})
    assert record["response"]["success"] is True
    listed = call(served, "GET", f"{ACTIONS}/")  # served as without the slash
    assert call(served, "GET", f"{ACTIONS}?count=true") == {"actions": len(listed)}
    assert call(served, "GET", f"{ACTIONS}?count=true&skip=1") == {"actions": len(listed) - 1}
    assert call(served, "GET", f"{ACTIVATIONS}?count=true&name=final") == {"activations": 1}
    refused = call(served, "GET", f"{ACTIVATIONS}?count=true&docs=true", status=400)
    assert refused["error"] == "The parameter 'docs' is not permitted with 'count'."
    got = call(served, "GET", f"{ACTIVATIONS}/{record['activationId']}/")
    assert got["activationId"] == record["activationId"]


def test_a_time_out_answers_502_with_its_record(served: ServedPlatform, code: str) -> None:
    # 100 ms cannot cover the adapter's /init in a cold start: its clock runs out.
    call(served, "PUT", f"{ACTIONS}/slow", {"exec": {"kind": "lora", "code": code},
                                            "limits": {"timeout": 100}})
    status, record = served.request("POST", f"{ACTIONS}/slow?blocking=true&timeout=600000",
                                    {"prompt": "hi"})
    assert status == 502, record
    assert record["response"]["status"] == "action developer error"
    assert "exceeded its time limits of 100 milliseconds" in record["response"]["result"]["error"]
    assert {"key": "timeout", "value": True} in record["annotations"]


def test_cors_options_and_info(served: ServedPlatform) -> None:
    status, headers, _ = raw(served, "OPTIONS", f"{ACTIONS}/anything")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET, DELETE, POST, PUT, HEAD"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, body = raw(served, "GET", ACTIONS)  # an error carries them too
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "*", body
    status, headers, body = raw(served, "GET", "/api/v1/")
    info = json.loads(body)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    assert {"description", "api_version", "api_version_path", "build", "support",
            "api_paths", "limits", "runtimes"} <= set(info)
    assert info["limits"]["max_action_logs"] == 10 * 1024 * 1024
    assert info["runtimes"]["lora"][0]["kind"] == "lora"


def test_namespace_limits_in_openwhisk_fields(served: ServedPlatform) -> None:
    limits = call(served, "GET", "/api/v1/namespaces/_/limits")
    settings = served.settings
    assert limits["invocationsPerMinute"] == settings.invocations_per_minute
    assert limits["concurrentInvocations"] == settings.concurrent_invocations
    assert (limits["minActionTimeout"], limits["maxActionTimeout"]) == (100, 600_000)
    assert (limits["minActionLogs"], limits["maxActionLogs"]) == (0, 10)
    assert {"firesPerMinute", "minActionMemory", "maxActionMemory", "minActionConcurrency",
            "maxActionConcurrency"} <= set(limits)
