"""An action as the invoker knows it: its `FunctionRef`, built from the registry's row."""

from __future__ import annotations

from pathlib import Path

from lorafaas.adapters.archive import HANDLER_NAME
from lorafaas.invoking.activations import LORA_KIND, FunctionRef
from lorafaas.names import QualifiedName
from lorafaas.registry.actions import qualified_name
from lorafaas.registry.models import Action


def code_digest(action: Action) -> str:
    """The digest of the action's code artifact (a sequence has none: it never runs as a
    function of its own, so asking for it is a bug)."""
    if action.artifact_digest is None:
        raise ValueError(f"action {action.name!r} of kind {action.exec_kind!r} has no code")
    return action.artifact_digest


def action_rank(action: Action) -> int | None:
    """The LoRA rank validation stored in the action's `adapter` annotation, if any."""
    for annotation in action.annotations:
        value = annotation.get("value")
        if annotation.get("key") == "adapter" and isinstance(value, dict):
            rank = value.get("rank")
            return rank if isinstance(rank, int) else None
    return None


def action_backbone(action: Action) -> str | None:
    """The backbone the action's `backbone` annotation names (None: the default)."""
    for annotation in action.annotations:
        if annotation.get("key") == "backbone" and isinstance(annotation.get("value"), str):
            return str(annotation["value"])
    return None


def function_key(name: QualifiedName, action: Action) -> str:
    """The pool's key of an action's code run under `name`: containers are reused only for
    the same code, run for the same namespace."""
    return f"{name}@{action.version}:{code_digest(action)}"


def function_ref(namespace: str, action: Action, adapter_dir: Path,
                 name: QualifiedName | None = None) -> FunctionRef:
    """The action's code, limits, backbone and adapter rank, for the invoker; it runs under
    `name` (default: its own name in `namespace`, the namespace it belongs to). A code
    action's `adapter_dir` is its code's folder; a lora action with `__main__.py` has a
    handler."""
    name = name or qualified_name(namespace, action)
    lora = action.exec_kind == LORA_KIND
    return FunctionRef(key=function_key(name, action), name=name,
                       adapter_dir=adapter_dir, memory_mb=action.limits["memory"],
                       adapter_digest=code_digest(action),
                       backbone=action_backbone(action) or "", adapter_rank=action_rank(action),
                       kind=action.exec_kind,
                       has_handler=lora and (adapter_dir / HANDLER_NAME).exists())
