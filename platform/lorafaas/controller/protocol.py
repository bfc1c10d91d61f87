"""Shapes of the REST API: parsing action bodies and limits, rendering actions."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.errors import BadRequest
from lorafaas.registry.models import Action, ActionVersion

LORA_KIND = "lora"
SEQUENCE_KIND = "sequence"  # OpenWhisk's: components, no code (`controller.sequence_actions`)
DEFAULT_MAX_TOKENS = 512


@dataclass(frozen=True)
class LimitRange:
    """Allowed range of one limit, with its default."""

    low: int
    high: int
    default: int
    unit: str


def limit_ranges(default_timeout_ms: int, default_memory_mb: int,
                 default_slo_ttft_ms: int = 2_000) -> dict[str, LimitRange]:
    """The limits an action of kind lora accepts (`slo_ttft_ms`: its time-to-first-token
    objective, which sizes its batches)."""
    return {
        "timeout": LimitRange(100, 600_000, default_timeout_ms, "milliseconds"),
        "memory": LimitRange(256, 65_536, default_memory_mb, "MB"),
        "concurrency": LimitRange(1, 500, 1, "activations"),
        "max_tokens": LimitRange(1, 8192, DEFAULT_MAX_TOKENS, "tokens"),
        "slo_ttft_ms": LimitRange(1, 600_000, default_slo_ttft_ms, "milliseconds"),
    }


@dataclass(frozen=True)
class ActionBody:
    """A parsed PUT body: the decoded adapter zip (a staged file) and the rest of the action."""

    code: Path
    parameters: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    limits: dict[str, int]
    publish: bool

    def annotation(self, key: str) -> Any:
        """The value of one annotation, or None."""
        return next((a.get("value") for a in self.annotations if a.get("key") == key), None)


def parse_action_body(body: Any, ranges: dict[str, LimitRange]) -> ActionBody:
    """Validate a PUT body of an action of kind lora, its code already decoded to a file
    (see `uploads.decode_action_body`)."""
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.")
    return ActionBody(code=_code(body.get("exec")),
                      parameters=_key_values(body.get("parameters", []), "parameters"),
                      annotations=_key_values(body.get("annotations", []), "annotations"),
                      limits=parse_limits(body.get("limits") or {}, ranges),
                      publish=bool(body.get("publish", False)))


def _code(exec_field: Any) -> Path:
    if not isinstance(exec_field, dict):
        raise BadRequest("The request content was malformed: 'exec' is missing.")
    if exec_field.get("kind") != LORA_KIND:
        raise BadRequest(f"exec.kind {exec_field.get('kind')!r} is not supported; "
                         f"use {LORA_KIND!r}")
    if exec_field.get("binary") is not True or not isinstance(exec_field.get("code"), Path):
        raise BadRequest("exec.binary must be true and exec.code the base64 of an adapter zip")
    return Path(exec_field["code"])


def _key_values(value: Any, field: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(kv, dict) and isinstance(kv.get("key"),
                                                                                  str)
                                              and "value" in kv for kv in value):
        raise BadRequest(f"'{field}' must be a list of {{\"key\", \"value\"}} objects")
    return value


def parse_limits(limits: Any, ranges: dict[str, LimitRange]) -> dict[str, int]:
    """Limits with defaults filled in; a 400 naming the limit when one is out of range."""
    if not isinstance(limits, dict):
        raise BadRequest("'limits' must be an object")
    unknown = set(limits) - set(ranges)
    if unknown:
        raise BadRequest(f"unknown limits: {', '.join(sorted(unknown))}")
    parsed = {}
    for name, bounds in ranges.items():
        value = limits.get(name, bounds.default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"limit '{name}' must be an integer ({bounds.unit})")
        if not bounds.low <= value <= bounds.high:
            raise BadRequest(_out_of_range(name, value, bounds))
        parsed[name] = value
    return parsed


# OpenWhisk names the timeout limit "duration" in its messages.
_OPENWHISK_NAMES = {"timeout": "duration"}


def _out_of_range(name: str, value: int, bounds: LimitRange) -> str:
    """OpenWhisk's message for a limit out of its range."""
    side, threshold = ("below", bounds.low) if value < bounds.low else ("exceeds", bounds.high)
    return (f"The request content was malformed:\nrequirement failed: "
            f"{_OPENWHISK_NAMES.get(name, name)} {value} {bounds.unit} {side} allowed threshold "
            f"of {threshold} {bounds.unit}")


def action_json(action: Action, namespace: str, code: bytes | None) -> dict[str, Any]:
    """An action as OpenWhisk's JSON (the zip as base64 when `code` is given)."""
    exec_field: dict[str, Any] = {"kind": action.exec_kind, "binary": True,
                                  "digest": action.artifact_digest}
    if action.exec_kind == SEQUENCE_KIND:
        exec_field = {"kind": SEQUENCE_KIND, "components": list(action.components or [])}
    elif code is not None:
        exec_field["code"] = base64.b64encode(code).decode()
    return {"namespace": namespace, "name": action.name, "version": action.version,
            "exec": exec_field, "parameters": action.parameters,
            "annotations": action.annotations, "limits": action.limits,
            "publish": action.publish, "updated": action.updated_ms}


def action_version_json(row: ActionVersion) -> dict[str, Any]:
    """One kept version of an action."""
    return {"version": row.version, "exec": {"kind": row.exec_kind, "digest": row.artifact_digest},
            "created": row.created_ms}


def parameter_values(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """Key/value list as a dict (the action's default parameters)."""
    return {kv["key"]: kv["value"] for kv in parameters}
