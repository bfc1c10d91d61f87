"""The OpenAPI document lists exactly the routes the application serves."""

from __future__ import annotations

from pathlib import Path

from lorafaas.controller.app import create_app
from lorafaas.controller.openapi import openapi_document
from lorafaas.controller.routes import api_routes
from lorafaas.settings import load_settings


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every API route the app registers: HEAD aside (aiohttp adds it), and
    the web console's pages (`/`, `/console/...`), which are not part of the API."""
    app = create_app(load_settings({"LORAFAAS_HOME": str(tmp_path)}))
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.method != "HEAD" and route.resource is not None
            and not _console(route.resource.canonical)}


def _console(path: str) -> bool:
    return path == "/" or path == "/console" or path.startswith("/console/")


def test_every_served_route_is_documented_and_back(tmp_path: Path) -> None:
    document = openapi_document(api_routes())
    documented = {(method.upper(), path) for path, operations in document["paths"].items()
                  for method in operations}
    assert served_routes(tmp_path) == documented


def test_operations_document_their_path_parameters_and_errors() -> None:
    for path, operations in openapi_document(api_routes())["paths"].items():
        for operation in operations.values():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}
            if path != "/api/v1/openapi.json":
                assert "401" in operation["responses"] and "404" in operation["responses"]


def test_the_backbones_listing_documents_its_shape() -> None:
    document = openapi_document(api_routes())
    ok = document["paths"]["/api/v1/backbones"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Backbones"}
    backbone = document["components"]["schemas"]["Backbone"]
    assert set(backbone["required"]) == {"name", "default", "modelType", "architecture",
                                         "dtype", "bytes", "parameters", "contextLength"}


def test_every_parameter_and_body_has_a_valid_schema() -> None:
    from jsonschema import Draft7Validator

    for path, operations in openapi_document(api_routes())["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                Draft7Validator.check_schema(parameter["schema"])
                assert parameter["schema"].get("type") in ("string", "integer", "boolean")
            body = operation.get("requestBody")
            if body is not None:
                schema = body["content"]["application/json"]["schema"]
                Draft7Validator.check_schema(schema)
                assert schema.get("properties"), (method, path)  # not a bare "object"


def test_the_documented_bounds_are_the_checked_ones() -> None:
    from lorafaas.controller.schemas import BODIES, QUERY

    assert QUERY["timeout"]["maximum"] == 600_000 and QUERY["limit"]["maximum"] == 200
    limits = BODIES["Action"]["properties"]["limits"]["properties"]
    assert limits["timeout"] == {"type": "integer", "minimum": 100, "maximum": 600_000,
                                 "description": "milliseconds"}


def test_entity_operations_document_the_shape_of_their_answer() -> None:
    document = openapi_document(api_routes())
    prefix = "/api/v1/namespaces/{namespace}/"
    for collection, schema in (("actions", "Action"), ("packages", "Package"),
                               ("triggers", "Trigger"), ("rules", "Rule")):
        operations = document["paths"][f"{prefix}{collection}/{{name}}"]
        for method in ("put", "get", "delete"):
            ok = operations[method]["responses"]["200"]
            assert ok["content"]["application/json"]["schema"] == {
                "$ref": f"#/components/schemas/{schema}"}, (collection, method)
        listing = document["paths"][f"{prefix}{collection}"]["get"]["responses"]["200"]
        assert "content" in listing, collection
    assert "408" not in document["paths"][f"{prefix}actions/{{name}}"]["post"]["responses"]
    kinds = [variant["properties"]["kind"]["enum"] for variant in
             document["paths"][f"{prefix}actions/{{name}}"]["put"]["requestBody"]["content"]
             ["application/json"]["schema"]["properties"]["exec"]["oneOf"]]
    assert kinds == [["lora"], ["python:3", "python:default"], ["sequence"]]
