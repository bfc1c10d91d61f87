"""wsk's text layouts: the `actions` and activations tables, durations, name truncation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lorafaas.start_kinds import NO_CONTAINER

ACTION_NAME_WIDTH = 70
# wsk's names of activation status codes 0-3.
STATUS_NAMES = ("success", "application error", "developer error", "internal error")


def annotation(entity: dict[str, Any], key: str) -> Any:
    """The value of one annotation of an action or activation, or None."""
    return next((a.get("value") for a in entity.get("annotations") or []
                 if a.get("key") == key), None)


def action_rows(actions: list[dict[str, Any]]) -> str:
    """`wsk action list`: the header `actions`, then `/namespace/name   private kind` rows."""
    lines = ["actions"]
    for action in actions:
        full_name = f"/{action.get('namespace', '')}/{action.get('name', '')}"
        kind = annotation(action, "exec") or action.get("exec", {}).get("kind", "")
        lines.append(f"{full_name:<{ACTION_NAME_WIDTH}} private {kind}")
    return "\n".join(lines)


def package_rows(packages: list[dict[str, Any]]) -> str:
    """`wsk package list`: the header `packages`, then `/namespace/name   private|shared`."""
    lines = ["packages"]
    for package in packages:
        full_name = f"/{package.get('namespace', '')}/{package.get('name', '')}"
        lines.append(f"{full_name:<{ACTION_NAME_WIDTH}} "
                     f"{'shared' if package.get('publish') else 'private'}")
    return "\n".join(lines)


def package_summary(package: dict[str, Any]) -> str:
    """`wsk package get --summary`: the package, its parameters, and each action."""
    path = f"/{package.get('namespace', '')}/{package.get('name', '')}"
    keys = ", ".join(str(p.get("key")) for p in package.get("parameters") or [])
    lines = [f"package {path}", f"   (parameters: {keys or 'none defined'})"]
    lines += [f" action {path}/{action.get('name', '')}"
              for action in package.get("actions") or []]
    return "\n".join(lines)


def action_summary(action: dict[str, Any]) -> str:
    """`action get --summary`: the action, its kind (a sequence's components), parameters."""
    path = f"/{action.get('namespace', '')}/{action.get('name', '')}"
    exec_field = action.get("exec") or {}
    description = annotation(action, "description")
    keys = ", ".join(str(p.get("key")) for p in action.get("parameters") or [])
    lines = [f"action {path}" + (f": {description}" if description else ""),
             f"   (kind: {exec_field.get('kind', '?')})"]
    lines += [f"   (component: {name})" for name in exec_field.get("components") or []]
    lines.append(f"   (parameters: {keys or 'none defined'})")
    return "\n".join(lines)


def backbone_rows(backbones: list[dict[str, Any]]) -> str:
    """`backbone list`: name (the default starred), architecture, dtype, size, parameters,
    context length."""
    header = ("name", "architecture", "dtype", "published", "parameters", "context")
    rows = [header] + [(f"{b.get('name', '')}{' *' if b.get('default') else ''}",
                        str(b.get("architecture") or b.get("modelType") or "?"),
                        str(b.get("dtype", "")), f"{int(b.get('bytes') or 0) / 2**20:.1f} MiB",
                        f"{int(b.get('parameters') or 0):,}", str(b.get("contextLength") or "?"))
                       for b in backbones]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def activation_rows(activations: list[dict[str, Any]]) -> str:
    """`wsk activation list`: datetime, id, kind, start kind, duration, status, entity."""
    kind_width = max([len("Kind")] + [len(_kind(a)) for a in activations])
    start_width = max([len("Start")] + [len(start_kind(a)) for a in activations])
    status_width = max([len("Status")] + [len(status_name(a)) for a in activations])
    header = (f"{'Datetime':<19} {'Activation ID':<32} {'Kind':<{kind_width}} "
              f"{'Start':<{start_width}} {'Duration':<10} {'Status':<{status_width}} Entity")
    return "\n".join([header] + [_activation_row(a, kind_width, start_width, status_width)
                                 for a in activations])


def start_kind(activation: dict[str, Any]) -> str:
    """The record's `startKind` (cold, prewarm, preloaded, warm), or `-` without one."""
    return str(annotation(activation, "startKind") or NO_CONTAINER)


def _activation_row(activation: dict[str, Any], kind_width: int, start_width: int,
                    status_width: int) -> str:
    start_ms = int(activation.get("start") or 0)
    duration_ms = int(activation.get("end") or 0) - start_ms if activation.get("duration") else 0
    started = datetime.fromtimestamp(start_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    return (f"{started} {activation.get('activationId', ''):<32} "
            f"{_kind(activation):<{kind_width}} {start_kind(activation):<{start_width}} "
            f"{go_duration(duration_ms):<10} {status_name(activation):<{status_width}} "
            f"{entity_name(activation)}")


def _kind(activation: dict[str, Any]) -> str:
    return str(annotation(activation, "kind") or "unknown")


def status_name(activation: dict[str, Any]) -> str:
    """wsk's word for an activation's status code."""
    code = activation.get("statusCode")
    if code is None:
        code = (activation.get("response") or {}).get("statusCode", 0)
    return STATUS_NAMES[code] if isinstance(code, int) and 0 < code < len(STATUS_NAMES) \
        else STATUS_NAMES[0]


def entity_name(activation: dict[str, Any]) -> str:
    """`namespace/name:version`, each part shortened as wsk does."""
    return (f"{truncate(str(activation.get('namespace', '')), 20)}/"
            f"{truncate(str(activation.get('name', '')), 30)}:"
            f"{truncate(str(activation.get('version', '')), 20)}")


def truncate(text: str, limit: int) -> str:
    """Shorten with `...` in the middle when longer than `limit` (wsk's TruncateStr)."""
    if len(text) <= limit:
        return text
    head = limit // 2 + limit % 2
    return text[:head] + "..." + text[len(text) - limit // 2 + 3:]


def go_duration(milliseconds: int) -> str:
    """A duration as Go prints one at millisecond precision: `0s`, `850ms`, `1.5s`, `2m3.25s`."""
    if milliseconds == 0:
        return "0s"
    if abs(milliseconds) < 1000:
        return f"{milliseconds}ms"
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"
