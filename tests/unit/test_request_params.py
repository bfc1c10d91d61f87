"""Strict JSON bodies and the default handler's parameters, without HTTP."""

from __future__ import annotations

import pytest

from lorafaas.controller.api.params import MAX_JSON_DEPTH, parse_json
from lorafaas.controller.invoke_params import check_generation_parameters
from lorafaas.errors import BadRequest


@pytest.mark.parametrize("raw,named", [
    (b"\xff", "UTF-8"), (b"[" * 5000, "nested"), (b"[NaN]", "NaN"), (b"[-Infinity]", "Infinity"),
    (b'["\\u0000"]', "NUL"), (b'{"\\udc00": 1}', "surrogate"), (b"[" + b"1" * 4301 + b"]", "digits"),
    (b"{", "malformed"),
])
def test_bad_bodies_are_refused_naming_the_problem(raw: bytes, named: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_json(raw)
    assert named in refused.value.message and refused.value.param == "body"


def test_depth_is_bounded_exactly() -> None:
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    with pytest.raises(BadRequest):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert parse_json(b"  ") == {} and parse_json('{"a": "é😀"}'.encode()) == {"a": "é😀"}


@pytest.mark.parametrize("parameters,param", [
    ({"prompt": 3}, "prompt"), ({"messages": [{"content": 1}]}, "messages"),
    ({"prompt": "x", "max_tokens": 9}, "max_tokens"), ({"prompt": "x"}, "max_tokens"),
    ({"prompt": "x", "max_tokens": True}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 1, "temperature": -0.1}, "temperature"),
    ({"prompt": "x", "max_tokens": 1, "seed": 1.5}, "seed"),
    ({"prompt": "x", "max_tokens": 1, "stop": 3}, "stop"),
])
def test_generation_parameters_are_checked(parameters: dict[str, object], param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_generation_parameters(parameters, max_tokens_limit=8)
    assert refused.value.param == param and param in refused.value.message


def test_good_generation_parameters_pass() -> None:
    check_generation_parameters({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                                 "temperature": 2, "top_p": 0.5, "seed": 2**64 - 1,
                                 "stop": ["\n"], "stream": True}, max_tokens_limit=8)
    check_generation_parameters({"prompt": "x"}, max_tokens_limit=64)  # the runtime's default
