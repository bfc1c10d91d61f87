"""Web actions, as OpenWhisk's `WebActions`: the request as an action's arguments, and its
result as an HTTP response by the extension the path names. No HTTP here (`api.web` is the
handler), so that each rule can be tested on its own.

- `/api/v1/web/{namespace}/{package}/{action}.{ext}{/projection}`: `ext` is one of `.json`,
  `.http`, `.html`, `.svg`, `.text` (none: `.http`); the path after it projects a field of
  the result (`.json`, `.html`, `.svg`, `.text`; `.html`, `.svg`, `.text` project their
  own name by default: `.text` of a lora action's `{"text", ...}` is the text itself).
- The arguments: `__ow_method` (lower case), `__ow_headers` (lower-case names; the
  `Authorization` header is left out, so that no caller's key reaches another namespace's
  code), `__ow_path`, `__ow_user` when the caller authenticated, then the query's
  parameters, then a JSON object or form body's fields. A body of another type (or any body
  of a `raw-http` action) is `__ow_body`: text, or base64 when binary; `raw-http` actions get
  the query string as `__ow_query`.
- Neither the query nor the body may set an `__ow_` field or, where the action is annotated
  `final`, a parameter the action defines (400).
- An application error answers its `error` field through the extension; a developer or
  platform error is a 400 "There was an error processing your request."
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from lorafaas.errors import BadRequest, LoraFaasError, NotFound

RESERVED = ("__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_query", "__ow_body")
REQUIRE_AUTH_HEADER = "x-require-whisk-auth"
CORS_METHODS = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"

PROPERTY_NOT_FOUND = "Response does not include requested property."
PARAMETERS_NOT_ALLOWED = ("Request defines parameters that are not allowed (e.g., reserved "
                          "properties).")
PROCESSING_ERROR = "There was an error processing your request."
UNKNOWN_CONTENT_TYPE = "Response did not specify a known content-type."
CONTENT_TYPE_ERROR = "Response type in header did not match generated content type."
NOT_READY = "Response not yet ready."


def invalid_media(media: str) -> str:
    """OpenWhisk's message for a result the extension cannot render."""
    return f"Response is not valid '{media}'."


@dataclass(frozen=True)
class WebResponse:
    """What the handler sends: status, headers (a name may repeat), body and its type."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


# --- the request side -------------------------------------------------------------------

NON_BINARY = ("application/json", "application/xml", "application/javascript",
              "application/ecmascript", "application/x-www-form-urlencoded",
              "image/svg+xml")


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type value, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_family(media: str) -> bool:
    """application/json, or a type ending in +json."""
    return media == "application/json" or media.endswith("+json")


def is_binary(media: str) -> bool:
    """Whether a media type is binary (Akka's rule: text, JSON, XML and a few others are
    not)."""
    return not (media.startswith("text/") or media in NON_BINARY
                or media.endswith(("+json", "+xml")))


@dataclass(frozen=True)
class WebRequest:
    """The parts of an HTTP request a web action sees."""

    method: str
    headers: Mapping[str, str]  # lower-case names
    path: str  # what follows the action's name and extension
    query_string: str
    body: bytes
    content_type: str | None


def request_body(request: WebRequest, raw: bool) -> Any:
    """The body as the action receives it: None (empty), a JSON value or form fields (not
    raw), else text or base64 (binary, and JSON in a raw action, as OpenWhisk does)."""
    if not request.body:
        return None
    media = media_type(request.content_type)
    if not raw and is_json_family(media):
        try:
            return json.loads(request.body)
        except (UnicodeDecodeError, ValueError) as error:
            raise BadRequest(f"The request content was malformed: {error}") from error
    if not raw and media == "application/x-www-form-urlencoded":
        return dict(parse_qsl(_text(request.body), keep_blank_values=True))
    if is_binary(media) or media == "application/json":
        return base64.b64encode(request.body).decode()
    return _text(request.body)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest("The request content was malformed: the body is not UTF-8") \
            from error


def action_arguments(request: WebRequest, body: Any, *, raw: bool, user: str | None,
                     protected: set[str]) -> dict[str, Any]:
    """The action's arguments (OpenWhisk's `toActionArgument`), after refusing a query or
    body that sets a reserved or protected parameter (not checked for a raw action)."""
    query = dict(parse_qsl(request.query_string, keep_blank_values=True))
    if not raw:
        given = set(query) | (set(body) if isinstance(body, dict) else set())
        if given & (set(RESERVED) | protected):
            raise BadRequest(PARAMETERS_NOT_ALLOWED)
    arguments: dict[str, Any] = {
        "__ow_method": request.method.lower(),
        "__ow_headers": {k: v for k, v in request.headers.items() if k != "authorization"},
        "__ow_path": request.path}
    if user is not None:
        arguments["__ow_user"] = user
    if raw:
        arguments["__ow_query"] = request.query_string
        arguments["__ow_body"] = "" if body is None else body
    else:
        arguments.update(query)
        if isinstance(body, dict):
            arguments.update(body)
        elif body is not None:
            arguments["__ow_body"] = body
    return arguments


def protected_parameters(annotations: list[dict[str, Any]],
                         parameters: list[dict[str, Any]]) -> set[str]:
    """The parameters a request may not set: all the action defines, when it is `final`."""
    return {p["key"] for p in parameters} if annotation(annotations, "final") is True else set()


def annotation(annotations: list[dict[str, Any]], key: str) -> Any:
    """An annotation's value, or None."""
    return next((a.get("value") for a in annotations if a.get("key") == key), None)


def authorized(annotations: list[dict[str, Any]], headers: Mapping[str, str],
               authenticated: bool) -> bool:
    """`require-whisk-auth`: true asks for a caller's key; a string or number, for the
    `X-Require-Whisk-Auth` header with that value; absent (or false), for nothing."""
    required = annotation(annotations, "require-whisk-auth")
    if required is None or required is False:
        return True
    if required is True:
        return authenticated
    if isinstance(required, (str, int)) and not isinstance(required, bool):
        return headers.get(REQUIRE_AUTH_HEADER) == str(required)
    return False


# --- the response side ------------------------------------------------------------------

Transcoder = Callable[[Any], WebResponse]


@dataclass(frozen=True)
class Extension:
    """A content extension: its default projection, whether a path may project, and how
    the projected result becomes a response."""

    name: str
    default_projection: tuple[str, ...]
    projection_allowed: bool
    transcode: Transcoder


def split_extension(segment: str) -> tuple[str, Extension]:
    """The action's name and its extension (`.http` when none is known)."""
    for extension in EXTENSIONS.values():
        if segment.endswith(extension.name) and len(segment) > len(extension.name):
            return segment[:-len(extension.name)], extension
    return segment, EXTENSIONS[".http"]


def projection(extension: Extension, path: str) -> list[str]:
    """The fields to project out of a successful result."""
    given = [part for part in path.split("/") if part]
    if extension.projection_allowed and given:
        return given
    return list(extension.default_projection)


def project(result: Any, fields: list[str]) -> Any:
    """The value at `fields` of the result; 404 when it has none there."""
    for name in fields:
        if not isinstance(result, dict) or name not in result:
            raise NotFound(PROPERTY_NOT_FOUND)
        result = result[name]
    return result


def activation_response(extension: Extension, path: str, status_code: int,
                        result: Any) -> WebResponse:
    """The HTTP response of a finished activation (status_code: OpenWhisk's 0 to 3)."""
    if status_code == 0:
        return extension.transcode(project(result, projection(extension, path)))
    if status_code == 1:  # an application error: its `error` field, through the extension
        return extension.transcode(project(result, ["error"]))
    raise BadRequest(PROCESSING_ERROR)


def as_json(value: Any) -> WebResponse:
    """`.json`: an object or an array."""
    if not isinstance(value, (dict, list)):
        raise BadRequest(invalid_media("application/json"))
    return WebResponse(200, json.dumps(value).encode(), "application/json")


def as_text(value: Any) -> WebResponse:
    """`.text`: a string as is, anything else as JSON text."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2)
    return WebResponse(200, text.encode(), "text/plain; charset=utf-8")


def _as_string(media: str, content_type: str) -> Transcoder:
    def transcode(value: Any) -> WebResponse:
        if not isinstance(value, str):
            raise BadRequest(invalid_media(media))
        return WebResponse(200, value.encode(), content_type)
    return transcode


def as_http(value: Any) -> WebResponse:
    """`.http`: a result `{statusCode, headers, body}` as the response it describes."""
    if not isinstance(value, dict):
        raise BadRequest(invalid_media("message/http"))
    headers = _headers(value.get("headers"))
    status = _status(value.get("statusCode"))
    body = value.get("body")
    others = [(k, v) for k, v in headers if k.lower() != "content-type"]
    if body is None or body == "":
        return WebResponse(status or 204, b"", None, others)
    declared = next((v for k, v in headers if k.lower() == "content-type"), None)
    if not isinstance(body, str):  # a JSON value: sent as JSON
        if declared is not None and not is_json_family(media_type(declared)):
            raise BadRequest(CONTENT_TYPE_ERROR)
        return WebResponse(status or 200, json.dumps(body).encode(),
                           declared or "application/json", others)
    content_type = declared or "text/html"
    media = media_type(content_type)
    if not media or "/" not in media:
        raise BadRequest(UNKNOWN_CONTENT_TYPE)
    return WebResponse(status or 200, _body_bytes(body, media), content_type, others)


def _body_bytes(body: str, media: str) -> bytes:
    # Binary types, and JSON given as base64 (as OpenWhisk still reads it), are decoded.
    if is_binary(media) or (is_json_family(media) and _is_base64(body)):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise BadRequest(CONTENT_TYPE_ERROR) from error
    return body.encode()


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return not text.lstrip().startswith(("{", "["))


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise BadRequest(invalid_media("message/http"))
    return [(str(name), item) for name, raw in value.items() for item in _header_values(raw)]


def _header_values(value: Any) -> list[str]:
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list):
        return [item for inner in value for item in _header_values(inner)]
    raise BadRequest(invalid_media("message/http"))


def _status(value: Any) -> int | None:
    if value is None:
        return None
    try:
        status = int(value) if isinstance(value, str) else value
    except ValueError as error:
        raise BadRequest(invalid_media("message/http")) from error
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise BadRequest(invalid_media("message/http"))
    return status


EXTENSIONS: dict[str, Extension] = {e.name: e for e in (
    Extension(".http", (), False, as_http),
    Extension(".json", (), True, as_json),
    Extension(".html", ("html",), True, _as_string("text/html", "text/html; charset=utf-8")),
    Extension(".svg", ("svg",), True, _as_string("image/svg+xml", "image/svg+xml")),
    Extension(".text", ("text",), True, as_text),
)}


class ResponseNotReady(LoraFaasError):
    """The activation runs on past the wait (202, as OpenWhisk answers it)."""

    status = 202
