"""The web-action rules (controller.web_actions), as OpenWhisk's WebActions applies them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lorafaas.controller.web_actions import (
    EXTENSIONS,
    WebRequest,
    action_arguments,
    activation_response,
    as_http,
    authorized,
    protected_parameters,
    request_body,
    split_extension,
)
from lorafaas.errors import BadRequest, NotFound

LORA_RESULT = {"text": "Arr matey", "finish_reason": "length",
               "usage": {"prompt_tokens": 3, "completion_tokens": 4}}


def web_request(body: bytes = b"", content_type: str | None = None, query: str = "",
                method: str = "POST", path: str = "") -> WebRequest:
    """A request as the handler reads it."""
    return WebRequest(method, {"host": "h", "authorization": "Basic x"}, path, query, body,
                      content_type)


def test_the_extension_is_split_from_the_name_and_defaults_to_http() -> None:
    assert split_extension("hello.json") == ("hello", EXTENSIONS[".json"])
    assert split_extension("hello.text") == ("hello", EXTENSIONS[".text"])
    assert split_extension("hello") == ("hello", EXTENSIONS[".http"])
    assert split_extension("v1.2") == ("v1.2", EXTENSIONS[".http"])


@pytest.mark.parametrize(("extension", "path", "body", "content_type"), [
    (".json", "", LORA_RESULT, "application/json"),
    (".json", "/usage", LORA_RESULT["usage"], "application/json"),
    (".text", "", "Arr matey", "text/plain; charset=utf-8"),
    (".text", "/finish_reason", "length", "text/plain; charset=utf-8"),
])
def test_a_result_is_projected_and_rendered_by_its_extension(
        extension: str, path: str, body: Any, content_type: str) -> None:
    response = activation_response(EXTENSIONS[extension], path, 0, LORA_RESULT)
    assert response.status == 200 and response.content_type == content_type
    decoded = json.loads(response.body) if extension == ".json" else response.body.decode()
    assert decoded == body


def test_a_missing_property_is_a_404_and_a_wrong_media_a_400() -> None:
    with pytest.raises(NotFound, match="does not include requested property"):
        activation_response(EXTENSIONS[".json"], "/nothing", 0, LORA_RESULT)
    with pytest.raises(BadRequest, match="Response is not valid 'application/json'."):
        activation_response(EXTENSIONS[".json"], "/text", 0, LORA_RESULT)
    with pytest.raises(BadRequest, match="Response is not valid 'text/html'."):
        activation_response(EXTENSIONS[".html"], "/usage", 0, {"usage": {}})


def test_an_application_error_answers_its_error_field_and_a_developer_error_a_400() -> None:
    response = activation_response(EXTENSIONS[".json"], "/ignored", 1,
                                   {"error": {"statusCode": 418}})
    assert json.loads(response.body) == {"statusCode": 418}
    assert activation_response(EXTENSIONS[".http"], "", 1, {"error": {"statusCode": 418}}
                               ).status == 418
    with pytest.raises(BadRequest, match="error processing your request"):
        activation_response(EXTENSIONS[".json"], "", 2, {"error": "crashed"})


def test_http_results_set_status_headers_and_body() -> None:
    png = base64.b64encode(b"\x89PNG\r\n").decode()
    image = as_http({"statusCode": 201, "headers": {"Content-Type": "image/png",
                                                    "Set-Cookie": ["a=1", "b=2"]},
                     "body": png})
    assert (image.status, image.body, image.content_type) == (201, b"\x89PNG\r\n", "image/png")
    assert image.headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    html = as_http({"body": "<p>hi</p>"})
    assert (html.status, html.body, html.content_type) == (200, b"<p>hi</p>", "text/html")
    as_json = as_http({"body": {"a": 1}})
    assert json.loads(as_json.body) == {"a": 1} and as_json.content_type == "application/json"
    empty = as_http({"headers": {"Location": "http://x"}, "statusCode": "302"})
    assert (empty.status, empty.body, empty.headers) == (302, b"", [("Location", "http://x")])
    assert as_http(LORA_RESULT).status == 204  # no body: no content


@pytest.mark.parametrize("result", [
    "a string", {"statusCode": "abc"}, {"statusCode": 99}, {"headers": "x"},
    {"headers": {"a": {"nested": 1}}},
])
def test_results_that_are_no_http_response_are_refused(result: Any) -> None:
    with pytest.raises(BadRequest, match="message/http"):
        as_http(result)


def test_a_binary_body_that_is_not_base64_is_refused() -> None:
    with pytest.raises(BadRequest, match="did not match"):
        as_http({"headers": {"content-type": "image/png"}, "body": "not base64!"})


def test_query_and_json_body_become_arguments_with_the_request_context() -> None:
    request = web_request(b'{"name": "Jane"}', "application/json", "a=1&name=q", path="/x")
    arguments = action_arguments(request, request_body(request, False), raw=False,
                                 user="guest", protected=set())
    assert arguments == {"__ow_method": "post", "__ow_headers": {"host": "h"},
                         "__ow_path": "/x", "__ow_user": "guest", "a": "1", "name": "Jane"}


def test_form_text_and_binary_bodies() -> None:
    form = web_request(b"name=Jane&x=", "application/x-www-form-urlencoded")
    assert request_body(form, False) == {"name": "Jane", "x": ""}
    text = web_request(b"Jane", "text/plain")
    arguments = action_arguments(text, request_body(text, False), raw=False, user=None,
                                 protected=set())
    assert arguments["__ow_body"] == "Jane" and "__ow_user" not in arguments
    binary = web_request(b"\x00\x01", "application/octet-stream")
    assert request_body(binary, False) == "AAE="


def test_a_raw_action_gets_the_query_string_and_the_body_undecoded() -> None:
    request = web_request(b'{"name": "Jane"}', "application/json", "name=Jane")
    arguments = action_arguments(request, request_body(request, True), raw=True, user=None,
                                 protected={"name"})
    assert arguments["__ow_query"] == "name=Jane"
    assert base64.b64decode(arguments["__ow_body"]) == b'{"name": "Jane"}'
    assert "name" not in arguments


@pytest.mark.parametrize(("query", "body"), [("__ow_path=x", b""), ("", b'{"__ow_user": 1}'),
                                             ("prompt=hack", b""), ("", b'{"prompt": "x"}')])
def test_reserved_and_final_parameters_cannot_be_set(query: str, body: bytes) -> None:
    request = web_request(body, "application/json", query)
    protected = protected_parameters([{"key": "final", "value": True}],
                                     [{"key": "prompt", "value": "p"}])
    with pytest.raises(BadRequest, match="not allowed"):
        action_arguments(request, request_body(request, False), raw=False, user=None,
                         protected=protected)


def test_parameters_are_protected_only_when_the_action_is_final() -> None:
    assert protected_parameters([], [{"key": "prompt", "value": "p"}]) == set()


def test_malformed_json_bodies_are_refused() -> None:
    with pytest.raises(BadRequest, match="malformed"):
        request_body(web_request(b"{nope", "application/json"), False)


def test_require_whisk_auth_asks_for_a_key_or_the_header() -> None:
    assert authorized([], {}, authenticated=False)
    key = [{"key": "require-whisk-auth", "value": True}]
    assert not authorized(key, {}, authenticated=False) and authorized(key, {}, True)
    secret = [{"key": "require-whisk-auth", "value": "s3cret"}]
    assert authorized(secret, {"x-require-whisk-auth": "s3cret"}, False)
    assert not authorized(secret, {"x-require-whisk-auth": "wrong"}, True)
    assert not authorized(secret, {}, True)
    number = [{"key": "require-whisk-auth", "value": 42}]
    assert authorized(number, {"x-require-whisk-auth": "42"}, False)
