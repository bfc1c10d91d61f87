"""The OpenAI request parser: what it passes to the function, what it refuses and how."""

from __future__ import annotations

from typing import Any

import pytest

from lorafaas.controller.openai_errors import InvalidParameter, error_object
from lorafaas.controller.openai_protocol import (
    check_max_tokens,
    chunk_json,
    parse_openai_request,
    resolve_model,
)
from lorafaas.names import InvalidName, QualifiedName

CHAT = {"model": "pirate", "messages": [{"role": "user", "content": "hi"}]}


def refused(body: dict[str, Any], chat: bool = True) -> InvalidParameter:
    """The error a body is refused with."""
    with pytest.raises(InvalidParameter) as error:
        parse_openai_request(body, chat)
    return error.value


def test_what_clients_send_by_default_is_accepted() -> None:
    # The `openai` package, LangChain's ChatOpenAI and LiteLLM, as logged against a server.
    body = {**CHAT, "stream": True, "max_completion_tokens": 20, "n": 1, "seed": 3,
            "stop": ["\n"], "stream_options": {"include_usage": True}, "user": "me",
            "temperature": 0.0, "top_p": 0.9, "logprobs": False, "presence_penalty": 0,
            "frequency_penalty": 0.0, "response_format": {"type": "text"}, "tools": [],
            "logit_bias": {}}
    parsed = parse_openai_request(body, chat=True)
    assert parsed.parameters == {"messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 20, "temperature": 0.0, "top_p": 0.9,
                                 "seed": 3, "stop": ["\n"]}
    assert parsed.stream and parsed.include_usage


def test_defaults_follow_openai() -> None:
    completion = parse_openai_request({"model": "pirate", "prompt": ["hi"]}, chat=False)
    assert completion.parameters == {"prompt": "hi", "max_tokens": 16, "temperature": 1.0}
    assert not completion.stream and not completion.include_usage
    chat = parse_openai_request(CHAT, chat=True)
    assert "max_tokens" not in chat.parameters  # the function's own limit applies


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"), ({"n": True}, "n"), ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"), ({"response_format": {"type": "json_object"}},
                                            "response_format"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"tool_choice": "auto"}, "tool_choice"),
    ({"functions": [{"name": "f"}]}, "functions"), ({"logit_bias": {"1": 2}}, "logit_bias"),
    ({"presence_penalty": 0.1}, "presence_penalty"), ({"frequency_penalty": -1},
                                                     "frequency_penalty"),
    ({"top_k": 4}, "top_k"), ({"store": True}, "store"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 8, "max_completion_tokens": 9},
                                        "max_completion_tokens"),
    ({"temperature": 2.5}, "temperature"), ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"), ({"seed": 1.5}, "seed"), ({"stop": ["a", "b", "c", "d", "e"]},
                                                         "stop"),
    ({"stop": [""]}, "stop"), ({"stream": "yes"}, "stream"), ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].role"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}]},
     "messages[0].tool_calls"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content"),
])
def test_unsupported_or_malformed_chat_parameters_are_named(extra: dict[str, Any],
                                                            param: str) -> None:
    error = refused({**CHAT, **extra})
    assert error.param == param and error.status == 400
    assert f"'{param}" in error.message


@pytest.mark.parametrize(("extra", "param"), [
    ({"best_of": 3}, "best_of"), ({"echo": True}, "echo"), ({"suffix": "end"}, "suffix"),
    ({"logprobs": 0}, "logprobs"), ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": [1, 2]},
                                                                         "prompt"),
])
def test_unsupported_completions_parameters_are_named(extra: dict[str, Any],
                                                      param: str) -> None:
    assert refused({"model": "pirate", "prompt": "hi", **extra}, chat=False).param == param


def test_messages_take_text_parts_and_the_developer_role() -> None:
    parsed = parse_openai_request({"model": "m", "messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hel"},
                                     {"type": "text", "text": "lo"}]}]}, chat=True)
    assert parsed.parameters["messages"] == [{"role": "system", "content": "be brief"},
                                             {"role": "user", "content": "hello"}]


def test_model_names_an_action_of_the_caller_s_namespace() -> None:
    pirate = QualifiedName("guest", None, "pirate")
    assert resolve_model("pirate", "guest") == pirate
    assert resolve_model("guest/pirate", "guest") == pirate
    assert resolve_model("_/pirate", "guest") == pirate
    assert resolve_model("/guest/pirate", "guest") == pirate
    in_package = QualifiedName("guest", "sea", "pirate")
    assert resolve_model("sea/pirate", "guest") == in_package  # OpenWhisk's pkg/action
    assert resolve_model("guest/sea/pirate", "guest") == in_package  # as /v1/models lists
    assert resolve_model("/_/sea/pirate", "guest") == in_package


def test_model_of_another_namespace_names_it() -> None:
    # Whether the caller may reach it (a published package's) is the endpoint's check.
    assert resolve_model("/bob/pirate", "guest") == QualifiedName("bob", None, "pirate")
    assert resolve_model("bob/sea/pirate", "guest") == QualifiedName("bob", "sea", "pirate")
    with pytest.raises(InvalidName, match="package 'b!d'"):
        resolve_model("b!d/pirate", "guest")


def test_max_tokens_over_the_function_s_limit_is_refused() -> None:
    parsed = parse_openai_request({**CHAT, "max_tokens": 513}, chat=True)
    check_max_tokens(parse_openai_request({**CHAT, "max_tokens": 512}, chat=True), 512)
    with pytest.raises(InvalidParameter, match="over the limit of 512") as error:
        check_max_tokens(parsed, 512)
    assert error.value.param == "max_tokens"


def test_chunks_carry_usage_null_only_when_usage_is_asked() -> None:
    plain = parse_openai_request({**CHAT, "stream": True}, chat=True)
    asked = parse_openai_request({**CHAT, "stream": True,
                                  "stream_options": {"include_usage": True}}, chat=True)
    assert "usage" not in chunk_json(plain, "a", "x")
    chunk = chunk_json(asked, "a", None, finish_reason="stop")
    assert chunk["usage"] is None
    assert chunk["choices"] == [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "delta": {}}]
    assert chunk["created"] == chunk_json(asked, "a", "y")["created"]


@pytest.mark.parametrize(("status", "kind", "code"), [
    (400, "invalid_request_error", None), (401, "invalid_request_error", "invalid_api_key"),
    (404, "invalid_request_error", None), (429, "rate_limit_error", "rate_limit_exceeded"),
    (500, "server_error", None), (502, "server_error", None),
])
def test_error_types_follow_openai(status: int, kind: str, code: str | None) -> None:
    assert error_object(status, "m") == {"message": "m", "type": kind, "param": None,
                                         "code": code}
