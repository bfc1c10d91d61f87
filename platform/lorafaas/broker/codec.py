"""The seam's types as JSON on the broker: each `encode_*` has its `decode_*`, and a decoded
value equals the one encoded (tests/unit/test_broker_codec.py)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    ArtifactLoad,
    FunctionRef,
)
from lorafaas.invoking.client import Eviction, FunctionView, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName

Json = dict[str, Any]


def dumps(value: Json) -> bytes:
    """A message body."""
    return json.dumps(value, separators=(",", ":")).encode()


def loads(body: bytes) -> Json:
    """A message body read back (an empty one is an empty object)."""
    value = json.loads(body) if body else {}
    if not isinstance(value, dict):
        raise TypeError("a broker message holds one JSON object")
    return value


def _name(name: QualifiedName) -> Json:
    return {"namespace": name.namespace, "package": name.package, "name": name.name}


def _qualified(value: Json) -> QualifiedName:
    return QualifiedName(value["namespace"], value["package"], value["name"])


def encode_function(function: FunctionRef) -> Json:
    """A function reference (its folder as a path string)."""
    fields = asdict(function)
    fields["name"] = _name(function.name)
    fields["adapter_dir"] = str(function.adapter_dir)
    return fields


def decode_function(value: Json) -> FunctionRef:
    """A function reference read back."""
    return FunctionRef(**{**value, "name": _qualified(value["name"]),
                          "adapter_dir": Path(value["adapter_dir"])})


def encode_request(request: ActivationRequest) -> Json:
    """An activation request."""
    fields = {key: getattr(request, key) for key in request.__dataclass_fields__}
    fields["function"] = encode_function(request.function)
    fields["bound"] = None if request.bound is None else _name(request.bound)
    return fields


def decode_request(value: Json) -> ActivationRequest:
    """An activation request read back."""
    bound = value.get("bound")
    return ActivationRequest(**{**value, "function": decode_function(value["function"]),
                                "bound": None if bound is None else _qualified(bound)})


def encode_result(result: ActivationResult) -> Json:
    """An activation's result."""
    return asdict(result)


def decode_result(value: Json) -> ActivationResult:
    """An activation's result read back."""
    return ActivationResult(**{**value, "loads": tuple(ArtifactLoad(**load)
                                                       for load in value["loads"])})


def encode_view(view: FunctionView) -> Json:
    """What an invoker holds of one function."""
    return asdict(view)


def decode_view(value: Json) -> FunctionView:
    """What an invoker holds of one function, read back."""
    return FunctionView(**value)


def encode_snapshot(snapshot: InvokerSnapshot) -> Json:
    """Every container of an invoker, its pool's size and its recent evictions."""
    return asdict(snapshot)


def decode_snapshot(value: Json) -> InvokerSnapshot:
    """An invoker's snapshot read back."""
    return InvokerSnapshot(value["containers"], value["pool_memory_mb"],
                           [Eviction(**e) for e in value["evictions"]])


def encode_metrics(metrics: MetricsText) -> Json:
    """An invoker's metrics text."""
    return asdict(metrics)


def decode_metrics(value: Json) -> MetricsText:
    """An invoker's metrics text read back."""
    return MetricsText(**value)
