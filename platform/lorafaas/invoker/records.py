"""OpenWhisk activation responses: status codes and their names."""

from __future__ import annotations

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
