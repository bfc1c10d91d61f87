"""Shapes of the REST API: parsing action bodies and limits, rendering actions."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorafaas.errors import BadRequest
from lorafaas.registry.models import Action, ActionVersion

LORA_KIND = "lora"
LORA_KIND = "lora"
SEQUENCE_KIND = "sequence"  # OpenWhisk's: components, no code (`controller.sequence_actions`)
PYTHON_KIND = "python:3"
# Code-action kinds as a client may name them -> as stored (OpenWhisk resolves `:default`).
CODE_KINDS = {PYTHON_KIND: PYTHON_KIND, "python:default": PYTHON_KIND}
SERVED_KINDS = f"{LORA_KIND}, {PYTHON_KIND} (also python:default), {SEQUENCE_KIND}"
DEFAULT_MAX_TOKENS = 512
LOG_LIMIT_MB = 10
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
    objective, which sizes its batches; `logs`: OpenWhisk's log size limit)."""
    return {
        "timeout": LimitRange(100, 600_000, default_timeout_ms, "milliseconds"),
        "memory": LimitRange(256, 65_536, default_memory_mb, "MB"),
        "concurrency": LimitRange(1, 500, 1, "activations"),
        "max_tokens": LimitRange(1, 8192, DEFAULT_MAX_TOKENS, "tokens"),
        "slo_ttft_ms": LimitRange(1, 600_000, default_slo_ttft_ms, "milliseconds"),
        # OpenWhisk's log limit (whisk.log-limit): 0 to 10 MB, 10 by default.
        "logs": LimitRange(0, LOG_LIMIT_MB, LOG_LIMIT_MB, "MB"),
    }


def code_limit_ranges(ranges: dict[str, LimitRange]) -> dict[str, LimitRange]:
    """The limits a code action accepts: OpenWhisk's (no tokens, no time-to-first-token)."""
    memory = ranges["memory"]
    return {"timeout": ranges["timeout"], "concurrency": ranges["concurrency"],
            "memory": LimitRange(memory.low, memory.high, CODE_MEMORY_MB, memory.unit),
            "logs": ranges["logs"]}


@dataclass(frozen=True)
class ActionBody:
    """A parsed PUT body: the decoded zip (a staged file) or, for a code action, its source
    text, and the rest of the action.

    A field the body left out is None: a create fills in its default, an update keeps the
    action's value (`merge_update`), as OpenWhisk's `WhiskActionPut` does.
    """

    code: Path | str | None
    parameters: list[dict[str, Any]] | None
    annotations: list[dict[str, Any]] | None
    limits: dict[str, int] | None  # only the limits the body sent, each checked
    publish: bool | None
    kind: str | None = None  # as stored; None: no exec (an update keeps the action's)
    main: str | None = None  # a code action's entry point (exec.main; None: `main`)
    binary: bool = True  # False: `code` is a code action's source text (or its file)

    def annotation(self, key: str) -> Any:
        """The value of one annotation, or None."""
        return annotation_value(self.annotations or [], key)


@dataclass(frozen=True)
class ActionContent:
    """What an action holds once created or merged: its artifact (a staged zip, or None to
    keep the stored one) and every other field filled in."""

    code: Path | None
    parameters: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    limits: dict[str, int]
    publish: bool
    kind: str = LORA_KIND
    main: str | None = None  # a code action's entry point (exec.main; None: `main`)
    binary: bool = True  # False: `code` is a code action's source text (or its file)

    def annotation(self, key: str) -> Any:
        """The value of one annotation, or None."""
        return annotation_value(self.annotations, key)


def annotation_value(annotations: list[dict[str, Any]], key: str) -> Any:
    """The value of the annotation `key` in a key/value list, or None."""
    return next((a.get("value") for a in annotations if a.get("key") == key), None)


def parse_action_body(body: Any, ranges: dict[str, LimitRange]) -> ActionBody:
    """Validate a PUT body of an action of kind lora, its code already decoded to a file
    (see `uploads.decode_action_body`); fields it leaves out stay None."""
    if not isinstance(body, dict):
        raise BadRequest("The request content was malformed: a JSON object is expected.")
    publish = body.get("publish")
    if publish is not None and not isinstance(publish, bool):
        raise BadRequest("'publish' must be true or false")
    kind: str | None = None
    code: Path | str | None = None
    main: str | None = None
    binary = True
    if body.get("exec") is not None:
        exec_field = _exec(body["exec"])
        kind = _kind(exec_field)
        if kind == LORA_KIND:
            code = _code(exec_field)
        else:
            code, main = _source(exec_field), _main(exec_field)
            binary = isinstance(exec_field.get("code"), Path)
    limit_ranges = ranges if kind in (None, LORA_KIND) else code_limit_ranges(ranges)
    return ActionBody(
        code=code,
        parameters=_optional_key_values(body, "parameters"),
        annotations=_optional_key_values(body, "annotations"),
        limits=None if body.get("limits") is None else parse_limits(body["limits"],
                                                                    limit_ranges,
                                                                    defaults=False),
        publish=publish, kind=kind, main=main, binary=binary)


def create_content(body: ActionBody, ranges: dict[str, LimitRange]) -> ActionContent:
    """A new action from its PUT body: what it left out takes its default (OpenWhisk's
    `makeWhiskAction`); a create needs `exec`."""
    if body.code is None:
        raise BadRequest("The request content was malformed: 'exec' is missing.")
    if body.kind not in (None, LORA_KIND):
        ranges = code_limit_ranges(ranges)
    limits = {name: bounds.default for name, bounds in ranges.items()}
    return ActionContent(code=_staged(body.code), parameters=body.parameters or [],
                         annotations=body.annotations or [],
                         limits={**limits, **(body.limits or {})},
                         publish=bool(body.publish))


def merge_update(body: ActionBody, parameters: list[dict[str, Any]],
                 annotations: list[dict[str, Any]], limits: dict[str, Any],
                 publish: bool) -> ActionContent:
    """An update merged with the action's current fields (OpenWhisk's `updateWhiskAction`):
    exec, parameters, annotations and publish are each kept when the body leaves them out,
    and each limit when the body does not name it."""
    return ActionContent(
        code=None if body.code is None else _staged(body.code),
        parameters=parameters if body.parameters is None else body.parameters,
        annotations=annotations if body.annotations is None else body.annotations,
        limits={**limits, **(body.limits or {})},
        publish=publish if body.publish is None else body.publish)


def _staged(code: Path | str) -> Path:
    # A code action's source text is written to the upload's staging folder before the
    # action is stored (see `api.actions`): past parsing, code is always a file.
    if not isinstance(code, Path):
        raise TypeError("an action's code is staged as a file before it is stored")
    return code


def _optional_key_values(body: dict[str, Any], field: str) -> list[dict[str, Any]] | None:
    value = body.get(field)
    return None if value is None else _key_values(value, field)


def _exec(exec_field: Any) -> dict[str, Any]:
    if not isinstance(exec_field, dict):
        raise BadRequest("The request content was malformed: 'exec' must be an object.")
    return exec_field


def _kind(exec_field: dict[str, Any]) -> str:
    """The kind as stored, read trimmed and in any case as OpenWhisk reads it; a 400 naming
    the kinds served for any other (`nodejs:*` included: the runtime image has no
    Node.js)."""
    kind = exec_field.get("kind")
    if not isinstance(kind, str):
        raise BadRequest("The request content was malformed: 'kind' must be a string "
                         "defined in 'exec'")
    normalized = kind.strip().lower()
    if normalized == LORA_KIND:
        return LORA_KIND
    if normalized in CODE_KINDS:
        return CODE_KINDS[normalized]
    raise BadRequest(f"exec.kind {kind!r} is not supported; the kinds served are: "
                     f"{SERVED_KINDS}")


def _code(exec_field: dict[str, Any]) -> Path:
    # OpenWhisk infers `binary` from the code (base64 is binary): whatever the client sends
    # for `binary` is ignored.
    if not isinstance(exec_field.get("code"), Path):
        raise BadRequest("exec.code must be the base64 of an adapter zip")
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


def parse_limits(limits: Any, ranges: dict[str, LimitRange], *,
                 defaults: bool = True) -> dict[str, int]:
    """Limits, with defaults filled in unless `defaults` is false (an update keeps the
    action's own); a 400 naming the limit when one is out of range. A limit given as null
    counts as left out, as OpenWhisk reads it."""
    if not isinstance(limits, dict):
        raise BadRequest("'limits' must be an object")
    unknown = set(limits) - set(ranges)
    if unknown:
        raise BadRequest(f"unknown limits: {', '.join(sorted(unknown))}")
    parsed = {}
    for name, bounds in ranges.items():
        value = limits.get(name)
        if value is None:
            if not defaults:
                continue
            value = bounds.default
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
    if action.exec_kind == SEQUENCE_KIND:
        exec_field = {"kind": SEQUENCE_KIND, "components": list(action.components or [])}
    else:
        if code_exec is not None and code_exec.get("main") is not None:
            exec_field["main"] = code_exec["main"]
        if code is not None:
            exec_field["code"] = base64.b64encode(code).decode() if binary else \
                code.decode("utf-8", "replace")
    return {"namespace": namespace, "name": action.name, "version": action.version,
            "exec": exec_field, "parameters": action.parameters,
            # An action stored before the `logs` limit existed has OpenWhisk's default.
            "annotations": action.annotations, "limits": {"logs": LOG_LIMIT_MB, **action.limits},
            "publish": action.publish, "updated": action.updated_ms}


def action_version_json(row: ActionVersion) -> dict[str, Any]:
    """One kept version of an action."""
    return {"version": row.version, "exec": {"kind": row.exec_kind, "digest": row.artifact_digest},
            "created": row.created_ms}


PARAMETERS_NOT_ALLOWED = ("Request defines parameters that are not allowed (e.g., reserved "
                          "properties).")


def final_parameters(parameters: list[dict[str, Any]],
                     annotations: list[dict[str, Any]]) -> set[str]:
    """The parameters an invoke may not override (OpenWhisk's `immutableParameters`): with
    the annotation `final` set to true, every parameter whose value is not null."""
    if annotation_value(annotations, "final") is not True:
        return set()
    return {kv["key"] for kv in parameters if kv.get("value") is not None}


def check_invoke_parameters(parameters: list[dict[str, Any]], annotations: list[dict[str, Any]],
                            payload: dict[str, Any]) -> None:
    """Refuse an invoke whose payload names a final parameter (400, OpenWhisk's message).

    `parameters` are the action's as it runs: with packages, the package's merged under the
    action's own, as OpenWhisk checks them once resolved across package and binding."""
    if set(payload) & final_parameters(parameters, annotations):
        raise BadRequest(PARAMETERS_NOT_ALLOWED)


def parameter_values(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """Key/value list as a dict (the action's default parameters)."""
    return {kv["key"]: kv["value"] for kv in parameters}
