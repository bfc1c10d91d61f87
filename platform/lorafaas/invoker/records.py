"""OpenWhisk activation records: status codes and their names, annotations, log lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SUCCESS = 0
APPLICATION_ERROR = 1
DEVELOPER_ERROR = 2
WHISK_ERROR = 3

STATUS_NAMES = {SUCCESS: "success", APPLICATION_ERROR: "application error",
                DEVELOPER_ERROR: "action developer error", WHISK_ERROR: "whisk internal error"}


def response(status_code: int, result: dict[str, Any]) -> dict[str, Any]:
    """The `response` field of an activation record."""
    return {"status": STATUS_NAMES[status_code], "statusCode": status_code,
            "success": status_code == SUCCESS, "result": result}


def annotation_list(values: dict[str, Any]) -> list[dict[str, Any]]:
    """OpenWhisk's key/value annotation list, in a stable order."""
    return [{"key": key, "value": value} for key, value in values.items() if value is not None]


def log_time(moment: str) -> float:
    """Epoch seconds of a log line's RFC 3339 timestamp (its fraction's zeros trimmed)."""
    whole, _, fraction = moment.rstrip("Z").partition(".")
    try:
        start = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return 0.0
    return start.timestamp() + (float(f"0.{fraction}") if fraction.isdigit() else 0.0)
