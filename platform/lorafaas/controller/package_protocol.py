"""The packages resource's shapes: a PUT body parsed, a package written as OpenWhisk's JSON."""

from __future__ import annotations

from typing import Any

from lorafaas.errors import BadRequest
from lorafaas.names import DEFAULT_NAMESPACE, QualifiedName, check_entity_name
from lorafaas.registry.actions import qualified_name
from lorafaas.registry.models import Action, Package
from lorafaas.registry.packages import PackageSpec, binding_of

FIELDS = frozenset({"namespace", "name", "version", "publish", "parameters", "annotations",
                    "binding", "updated"})


def parse_package_body(body: Any, caller: str) -> PackageSpec:
    """Validate a package PUT (`binding`'s `_` namespace is the caller's); what is not sent
    stays None, so an update keeps it."""
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.",
                         param="body")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(f"The request content was malformed: unknown field {unknown[0]!r}",
                         param=unknown[0])
    publish = body.get("publish")
    if publish is not None and not isinstance(publish, bool):
        raise BadRequest("'publish' must be true or false", param="publish")
    return PackageSpec(parameters=_key_values(body, "parameters"),
                       annotations=_key_values(body, "annotations"), publish=publish,
                       binding=_binding(body.get("binding"), caller))


def _key_values(body: dict[str, Any], field: str) -> list[dict[str, Any]] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(kv, dict) and isinstance(kv.get("key"), str) and "value" in kv
            and set(kv) <= {"key", "value"} for kv in value):
        raise BadRequest(f"'{field}' must be a list of {{\"key\", \"value\"}} objects",
                         param=field)
    return [{"key": kv["key"], "value": kv["value"]} for kv in value]


def _binding(value: Any, caller: str) -> QualifiedName | None:
    # OpenWhisk sends `binding: {}` for a package that binds nothing.
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or set(value) - {"namespace", "name"} \
            or not all(isinstance(value.get(k), str) for k in ("namespace", "name")):
        raise BadRequest("'binding' must be an object {\"namespace\", \"name\"} naming a "
                         "package", param="binding")
    namespace = caller if value["namespace"] == DEFAULT_NAMESPACE else value["namespace"]
    check_entity_name(namespace, "binding.namespace")
    return QualifiedName(namespace, None, check_entity_name(value["name"], "binding.name"))


def package_json(package: Package, namespace: str) -> dict[str, Any]:
    """A package or binding as OpenWhisk's JSON (`binding` is {} for a package)."""
    bound = binding_of(package)
    return {"namespace": namespace, "name": package.name, "version": package.version,
            "publish": package.publish,
            "binding": {} if bound is None else {"namespace": bound.namespace,
                                                  "name": bound.name},
            "parameters": package.parameters, "annotations": package.annotations,
            "updated": package.updated_ms}


def package_action_json(action: Action, namespace: str) -> dict[str, Any]:
    """An action as a package lists it (OpenWhisk's WhiskPackageAction)."""
    return {"name": action.name, "version": action.version,
            "namespace": qualified_name(namespace, action).path,
            "annotations": action.annotations}
