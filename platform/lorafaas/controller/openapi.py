"""The OpenAPI 3 document of the REST API, built from the route table."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from lorafaas import __version__
from lorafaas.controller.routes import ERRORS, Route
from lorafaas.controller.schemas import BODIES, PATH, QUERY

_DESCRIPTIONS = {200: "OK", 202: "Accepted: the activation id",
                 204: "No content (a trigger with no active rule, a web action's empty body)",
                 400: "Bad request",
                 401: "Unauthorized", 403: "Forbidden", 404: "Not found",
                 405: "Method not allowed",
                 409: "Conflict", 413: "Payload too large", 429: "Too many requests",
                 500: "Internal error",
                 502: "Application or developer error (a time-out included): the activation "
                      "record, or with ?result=true its result"}
OPENAPI_PATH = "/api/v1/openapi.json"
_BACKBONE = {
    "type": "object",
    "required": ["name", "default", "modelType", "architecture", "dtype", "bytes",
                 "parameters", "contextLength"],
    "properties": {
        "name": {"type": "string", "description": "what an action's `backbone` annotation names"},
        "default": {"type": "boolean", "description": "for actions that name none"},
        "modelType": {"type": "string", "nullable": True,
                      "description": "`model_type` of its config (llama, qwen2, ...)"},
        "architecture": {"type": "string", "nullable": True,
                         "description": "the first of its config's `architectures`"},
        "dtype": {"type": "string", "description": "the serving dtype it is published in"},
        "bytes": {"type": "integer", "description": "size of the published weights"},
        "parameters": {"type": "integer", "description": "tensor elements of its checkpoint"},
        "contextLength": {"type": "integer", "nullable": True,
                          "description": "its config's max_position_embeddings"}}}
_KEY_VALUES = {"type": "array", "items": {"type": "object", "required": ["key", "value"]}}
# What every entity answers (OpenWhisk's WhiskEntity fields).
_ENTITY = {"namespace": {"type": "string", "description": "namespace[/package]"},
           "name": {"type": "string"}, "version": {"type": "string"},
           "annotations": _KEY_VALUES, "publish": {"type": "boolean"},
           "updated": {"type": "integer", "description": "ms since the epoch"}}
_REF = {"type": "object", "required": ["path", "name"],
        "properties": {"path": {"type": "string"}, "name": {"type": "string"}}}


def _entity(description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "required": ["namespace", "name", "version", "annotations"],
            "properties": {**_ENTITY, **properties}}


def _listing(item: str, count_key: str) -> dict[str, Any]:
    """A list of entities, or with ?count=true `{count_key: N}`."""
    return {"oneOf": [{"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
                      {"type": "object", "required": [count_key], "additionalProperties": False,
                       "properties": {count_key: {"type": "integer", "minimum": 0}}}]}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error", "code"],
              "properties": {"error": {"type": "string"}, "code": {"type": "string"}}},
    "Backbone": _BACKBONE,
    "Backbones": {"type": "array", "items": {"$ref": "#/components/schemas/Backbone"}},
    "Action": _entity("An action (its code only with ?code=true)", {
        "exec": {"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "enum": ["lora", "python:3", "sequence"]},
            "binary": {"type": "boolean"}, "main": {"type": "string"},
            "code": {"type": "string", "description": "base64 of the zip, or the source"},
            "components": {"type": "array", "items": {"type": "string"},
                           "description": "a sequence's, fully qualified"}}},
        "parameters": _KEY_VALUES, "limits": {"type": "object"}}),
    "Actions": _listing("Action", "actions"),
    "Package": _entity("A package, or a binding (`binding` names the bound package)", {
        "binding": {"type": "object", "properties": {"namespace": {"type": "string"},
                                                     "name": {"type": "string"}}},
        "parameters": _KEY_VALUES,
        "actions": {"type": "array", "description": "its actions (GET of one package)",
                    "items": {"type": "object", "required": ["name"]}}}),
    "Packages": _listing("Package", "packages"),
    "Trigger": _entity("A trigger, with its rules (and an alarm feed's configuration)", {
        "parameters": _KEY_VALUES, "limits": {"type": "object"},
        "rules": {"type": "object", "description": "namespace/rule: its action and status"}}),
    "Triggers": _listing("Trigger", "triggers"),
    "Rule": _entity("A rule of a trigger and an action", {
        "status": {"type": "string", "enum": ["active", "inactive"]},
        "trigger": _REF, "action": _REF}),
    "Rules": _listing("Rule", "rules"),
    "Activation": {"type": "object", "required": ["activationId", "namespace", "name", "start"],
                   "description": "An activation record (a list's entries without `response` "
                                  "and `logs` unless ?docs=true)", "properties": {
                       "activationId": {"type": "string"}, "namespace": {"type": "string"},
                       "name": {"type": "string"}, "version": {"type": "string"},
                       "start": {"type": "integer"}, "end": {"type": "integer"},
                       "duration": {"type": "integer"}, "statusCode": {"type": "integer"},
                       "response": {"type": "object", "properties": {
                           "status": {"type": "string"}, "statusCode": {"type": "integer"},
                           "success": {"type": "boolean"}, "result": {}}},
                       "logs": {"type": "array", "items": {"type": "string"}},
                       "annotations": _KEY_VALUES, "cause": {"type": "string"}}},
    "Activations": _listing("Activation", "activations"),
}


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    """The document: one operation per route, errors as `{"error", "code"}`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(document_path(route.path), {})[route.method.lower()] = \
            _operation(route)
    paths.setdefault(OPENAPI_PATH, {})["get"] = {
        "summary": "This document", "responses": {"200": {"description": "OK"}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "LoRAFaaS REST API (OpenWhisk-compatible)", "version": __version__},
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic",
                                          "description": "uuid:key of a namespace"}},
            "schemas": SCHEMAS},
        "security": [{"basic": []}],
        "paths": paths,
    }


def document_path(path: str) -> str:
    """The route's path without aiohttp's patterns (`{action:.+}` is `{action}`)."""
    return re.sub(r"{(\w+):[^{}]*}", r"{\1}", path)


def _operation(route: Route) -> dict[str, Any]:
    parameters = [{"name": name, "in": "path", "required": True, "schema": PATH[name]}
                  for name in re.findall(r"{(\w+)}", document_path(route.path))]
    parameters += [{"name": name, "in": "query", "required": False, "schema": QUERY[name]}
                   for name in route.query]
    operation: dict[str, Any] = {"summary": route.summary, "tags": list(route.tags),
                                 "operationId": _operation_id(route),
                                 "parameters": parameters, "responses": _responses(route)}
    if route.body:
        schema = BODIES[route.schema] if route.schema else {"type": "object"}
        operation["requestBody"] = {"description": route.body, "required": False,
                                    "content": {"application/json": {"schema": schema}}}
    return operation


def _operation_id(route: Route) -> str:
    module = route.handler.__module__.rpartition(".")[2]
    # One handler serves every method of a web action: the method keeps the ids unique.
    suffix = f".{route.method.lower()}" if module == "web" else ""
    return f"{module}.{route.handler.__name__}{suffix}"


# A route's `response` for a 200 whose body is the text `OK` (OpenWhisk's `complete(OK)`).
PLAIN_OK = "text/plain OK"


def _responses(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in sorted(set(route.statuses) | set(ERRORS)):
        entry: dict[str, Any] = {"description": _DESCRIPTIONS[status]}
        if status == 200 and route.response == PLAIN_OK:
            entry["content"] = {"text/plain": {"schema": {"type": "string", "enum": ["OK"]}}}
        elif status == 200 and route.response is not None:
            entry["content"] = {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{route.response}"}}}
        if status >= 400 and status != 502:
            entry["content"] = {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}
        responses[str(status)] = entry
    return responses


def openapi_handler(routes: list[Route]) -> Any:
    """A handler serving the document (built once)."""
    document = openapi_document(routes)

    async def handle(request: web.Request) -> web.Response:
        return web.json_response(document)

    return handle
