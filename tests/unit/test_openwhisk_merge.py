"""OpenWhisk's rules for an action's PUT body and invoke: what a create fills in, what an
update keeps, and which parameters `final` protects (pure logic, no HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lorafaas.controller.protocol import (
    PARAMETERS_NOT_ALLOWED,
    ActionBody,
    check_invoke_parameters,
    create_content,
    final_parameters,
    limit_ranges,
    merge_update,
    parse_action_body,
)
from lorafaas.errors import BadRequest

RANGES = limit_ranges(60_000, 2048, 2000)
ZIP = Path("/staged/upload.zip")
CURRENT: dict[str, Any] = {
    "parameters": [{"key": "max_tokens", "value": 8}],
    "annotations": [{"key": "note", "value": "old"}],
    "limits": {"timeout": 5000, "memory": 1024, "concurrency": 1, "max_tokens": 64,
               "slo_ttft_ms": 2000, "logs": 10},
    "publish": True,
}


def parsed(**body: Any) -> ActionBody:
    return parse_action_body(body, RANGES)


def merged(body: ActionBody) -> Any:
    return merge_update(body, CURRENT["parameters"], CURRENT["annotations"],
                        CURRENT["limits"], CURRENT["publish"])


def test_an_update_without_fields_keeps_everything_and_the_artifact() -> None:
    content = merged(parsed())
    assert content.code is None  # no exec: the stored artifact stays, unvalidated again
    assert (content.parameters, content.annotations, content.limits, content.publish) == (
        CURRENT["parameters"], CURRENT["annotations"], CURRENT["limits"], True)


def test_each_limit_is_kept_unless_the_update_names_it() -> None:
    content = merged(parsed(limits={"timeout": 9000, "memory": None}))
    assert content.limits == {**CURRENT["limits"], "timeout": 9000}


def test_sent_fields_replace_whole_lists_as_openwhisk() -> None:
    body = parsed(exec={"kind": " LoRA ", "code": ZIP, "binary": False},
                  parameters=[{"key": "temperature", "value": 0}], annotations=[],
                  publish=False)
    content = merged(body)
    assert content.code == ZIP  # kind read trimmed, any case; `binary` ignored
    assert content.parameters == [{"key": "temperature", "value": 0}]
    assert content.annotations == [] and content.publish is False


def test_a_create_fills_defaults_and_needs_exec() -> None:
    content = create_content(parsed(exec={"kind": "lora", "code": ZIP},
                                    limits={"logs": 0}), RANGES)
    assert content.limits == {"timeout": 60_000, "memory": 2048, "concurrency": 1,
                              "max_tokens": 512, "slo_ttft_ms": 2000, "logs": 0}
    assert (content.parameters, content.annotations, content.publish) == ([], [], False)
    with pytest.raises(BadRequest, match="'exec' is missing"):
        create_content(parsed(), RANGES)


@pytest.mark.parametrize(("body", "message"), [
    ({"exec": {"kind": "nodejs:20", "code": ZIP}}, "is not supported"),
    ({"exec": {"kind": "lora", "code": "not decoded"}}, "base64 of an adapter zip"),
    ({"limits": {"logs": 11}}, "logs 11 MB exceeds allowed threshold of 10 MB"),
    ({"publish": "yes"}, "'publish' must be true or false"),
])
def test_bad_fields_are_refused_naming_them(body: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parsed(**body)


def test_final_protects_only_defined_parameters_when_true() -> None:
    parameters: list[dict[str, Any]] = [{"key": "prompt", "value": "fixed"},
                                        {"key": "seed", "value": None}]
    final: list[dict[str, Any]] = [{"key": "final", "value": True}]
    assert final_parameters(parameters, final) == {"prompt"}
    assert final_parameters(parameters, [{"key": "final", "value": "true"}]) == set()
    assert final_parameters(parameters, []) == set()
    check_invoke_parameters(parameters, final, {"seed": 3, "max_tokens": 4})
    check_invoke_parameters(parameters, [], {"prompt": "free"})
    with pytest.raises(BadRequest) as refused:
        check_invoke_parameters(parameters, final, {"prompt": "override"})
    assert refused.value.message == PARAMETERS_NOT_ALLOWED
