"""Shapes of the REST API: parsing action bodies and limits, rendering actions."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.errors import BadRequest
from lorafaas.registry.models import Action, ActionVersion

LORA_KIND = "lora"
PYTHON_KIND = "python:3"
# Code-action kinds as a client may name them -> as stored (OpenWhisk resolves `:default`).
CODE_KINDS = {PYTHON_KIND: PYTHON_KIND, "python:default": PYTHON_KIND}
SERVED_KINDS = f"{LORA_KIND}, {PYTHON_KIND} (also python:default)"
DEFAULT_MAX_TOKENS = 512
CODE_MEMORY_MB = 256  # OpenWhisk's default memory limit of a code action


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


def code_limit_ranges(ranges: dict[str, LimitRange]) -> dict[str, LimitRange]:
    """The limits a code action accepts: OpenWhisk's (no tokens, no time-to-first-token)."""
    memory = ranges["memory"]
    return {"timeout": ranges["timeout"], "concurrency": ranges["concurrency"],
            "memory": LimitRange(memory.low, memory.high, CODE_MEMORY_MB, memory.unit)}


@dataclass(frozen=True)
class ActionBody:
    """A parsed PUT body: the decoded zip (a staged file) or, for a code action, its source
    text, and the rest of the action."""

    code: Path | str
    parameters: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    limits: dict[str, int]
    publish: bool
    kind: str = LORA_KIND
    main: str | None = None  # a code action's entry point (exec.main; None: `main`)
    binary: bool = True  # False: `code` is a code action's source text (or its file)

    def annotation(self, key: str) -> Any:
        """The value of one annotation, or None."""
        return next((a.get("value") for a in self.annotations if a.get("key") == key), None)


def parse_action_body(body: Any, ranges: dict[str, LimitRange]) -> ActionBody:
    """Validate a PUT body of an action of kind lora, its code already decoded to a file
    (see `uploads.decode_action_body`)."""
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.")
    exec_field = _exec(body.get("exec"))
    kind = _kind(exec_field)
    return ActionBody(code=_code(exec_field) if kind == LORA_KIND else _source(exec_field),
                      parameters=_key_values(body.get("parameters", []), "parameters"),
                      annotations=_key_values(body.get("annotations", []), "annotations"),
                      limits=parse_limits(body.get("limits") or {}, ranges if kind == LORA_KIND
                                          else code_limit_ranges(ranges)),
                      publish=bool(body.get("publish", False)), kind=kind,
                      main=None if kind == LORA_KIND else _main(exec_field),
                      binary=kind == LORA_KIND or isinstance(exec_field.get("code"), Path))


def _exec(exec_field: Any) -> dict[str, Any]:
    if not isinstance(exec_field, dict):
        raise BadRequest("The request content was malformed: 'exec' is missing.")
    return exec_field


def _kind(exec_field: dict[str, Any]) -> str:
    """The kind as stored; a 400 naming the kinds served for any other (`nodejs:*`
    included: the runtime image has no Node.js)."""
    kind = exec_field.get("kind")
    if kind == LORA_KIND:
        return LORA_KIND
    if isinstance(kind, str) and kind in CODE_KINDS:
        return CODE_KINDS[kind]
    raise BadRequest(f"exec.kind {kind!r} is not supported; the kinds served are: "
                     f"{SERVED_KINDS}")


def _code(exec_field: dict[str, Any]) -> Path:
    if exec_field.get("binary") is not True or not isinstance(exec_field.get("code"), Path):
        raise BadRequest("exec.binary must be true and exec.code the base64 of an adapter zip")
    return Path(exec_field["code"])


def _source(exec_field: dict[str, Any]) -> Path | str:
    """A code action's code: its zip (decoded to a file) or its source text."""
    code = exec_field.get("code")
    if isinstance(code, Path) or (isinstance(code, str) and code.strip()):
        return code
    raise BadRequest("exec.code must be the action's source text, or the base64 of a zip "
                     "holding __main__.py (with exec.binary true)")


def _main(exec_field: dict[str, Any]) -> str | None:
    main = exec_field.get("main")
    if main is None or (isinstance(main, str) and main.isidentifier()):
        return main
    raise BadRequest("exec.main must name a function of the action's code (an identifier)")


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


def action_json(action: Action, namespace: str, code: bytes | None,
                code_exec: dict[str, Any] | None = None) -> dict[str, Any]:
    """An action as OpenWhisk's JSON (the zip as base64 when `code` is given; a code
    action's source as text, with `code_exec`, its stored `binary` and `main`)."""
    binary = True if code_exec is None else bool(code_exec.get("binary"))
    exec_field: dict[str, Any] = {"kind": action.exec_kind, "binary": binary,
                                  "digest": action.artifact_digest}
    if code_exec is not None and code_exec.get("main") is not None:
        exec_field["main"] = code_exec["main"]
    if code is not None:
        exec_field["code"] = base64.b64encode(code).decode() if binary else \
            code.decode("utf-8", "replace")
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
