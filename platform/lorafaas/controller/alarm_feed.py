"""The alarms feed (`/whisk.system/alarms/alarm` with `cron`, `.../interval` with `minutes`):
its parameters, checked with the messages of openwhisk-package-alarms, and its ticks.

A cron expression has 5 fields, or 6 with seconds first (as the feed's `cron` package
reads them); it is evaluated in `timezone` (default UTC). An interval fires every
`minutes` from `startDate` (default: one interval after its creation). Ticks before
`startDate` or after `stopDate` never fire. Every controller computes the same ticks, so
one row per tick elects the one that fires it (`registry.alarms.claim_tick`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from lorafaas.errors import BadRequest

CRON_FEED = "whisk.system/alarms/alarm"
INTERVAL_FEED = "whisk.system/alarms/interval"
ALARM_FEEDS = (CRON_FEED, INTERVAL_FEED)
# The feed's parameters: given to the feed, not stored as the trigger's own parameters.
FEED_PARAMETERS = ("cron", "minutes", "timezone", "trigger_payload", "startDate", "stopDate")


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm's schedule and payload."""

    feed: str
    cron: str | None
    minutes: int | None
    timezone: str | None
    payload: dict[str, Any]
    start_ms: int | None
    stop_ms: int | None
    created_ms: int


def feed_name(value: Any) -> str | None:
    """The alarm feed a `feed` annotation names (leading slash or not), else None."""
    if isinstance(value, str) and value.lstrip("/") in ALARM_FEEDS:
        return value.lstrip("/")
    return None


def parse_alarm(feed: str, params: dict[str, Any], now_ms: int) -> AlarmSpec:
    """The alarm of a CREATE, or a 400 with the feed's message."""
    cron = minutes = None
    if feed == INTERVAL_FEED:
        minutes = _minutes(params.get("minutes"))
    else:
        cron = _cron(params.get("cron"))
    timezone = _timezone(params.get("timezone"))
    start = _date(params, "startDate", now_ms)
    stop = _date(params, "stopDate", now_ms, start)
    return AlarmSpec(feed, cron, minutes, timezone, _payload(params.get("trigger_payload")),
                     start, stop, now_ms)


def update_alarm(spec: AlarmSpec, params: dict[str, Any], now_ms: int) -> AlarmSpec:
    """The alarm after an UPDATE: what `params` gives replaces what it had."""
    merged: dict[str, Any] = {"cron": spec.cron, "minutes": spec.minutes,
                              "timezone": spec.timezone, "trigger_payload": spec.payload}
    merged.update({key: params[key] for key in FEED_PARAMETERS if key in params})
    updated = parse_alarm(spec.feed, merged, now_ms)
    return AlarmSpec(spec.feed, updated.cron, updated.minutes, updated.timezone,
                     updated.payload,
                     updated.start_ms if "startDate" in params else spec.start_ms,
                     updated.stop_ms if "stopDate" in params else spec.stop_ms, spec.created_ms)


def _cron(value: Any) -> str:
    if not value:
        raise BadRequest("alarms trigger feed is missing the cron parameter", param="cron")
    if not isinstance(value, str) or len(value) > 256 or \
            not croniter.is_valid(value, second_at_beginning=True):
        raise BadRequest(f"cron pattern '{str(value)[:256]}' is not valid", param="cron")
    return value


def _minutes(value: Any) -> int:
    if value is None or value == "" or value == 0:
        raise BadRequest("interval trigger feed is missing the minutes parameter",
                         param="minutes")
    try:
        minutes = int(value)
    except (TypeError, ValueError) as error:
        raise BadRequest("the minutes parameter must be an integer", param="minutes") from error
    if isinstance(value, bool) or str(minutes) != str(value).strip():
        raise BadRequest("the minutes parameter must be an integer", param="minutes")
    if minutes <= 0:
        raise BadRequest("the minutes parameter must be an integer greater than zero",
                         param="minutes")
    return minutes


def _timezone(value: Any) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise BadRequest(f"timezone '{str(value)[:64]}' is not valid", param="timezone") \
            from error
    return str(value)


def _payload(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"payload": value}
    if not isinstance(value, dict):
        raise BadRequest("trigger_payload must be an object or a string",
                         param="trigger_payload")
    return value


def _date(params: dict[str, Any], name: str, now_ms: int, start_ms: int | None = None
          ) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    when = _epoch_ms(value)
    if when is None:
        raise BadRequest(f"{name} parameter '{str(value)[:64]}' is not a valid Date",
                         param=name)
    if when <= now_ms:
        raise BadRequest(f"{name} parameter '{str(value)[:64]}' must be in the future",
                         param=name)
    if start_ms is not None and when <= start_ms:
        raise BadRequest(f"{name} parameter '{str(value)[:64]}' must be greater than the "
                         f"startDate parameter", param=name)
    return when


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < 253_402_300_800_000 else None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def latest_tick(spec: AlarmSpec, now_ms: int) -> int | None:
    """The alarm's last tick at or before `now_ms` within its dates, if any."""
    if spec.stop_ms is not None and now_ms > spec.stop_ms:
        now_ms = spec.stop_ms
    if spec.minutes is not None:
        tick = _latest_interval(spec, spec.minutes * 60_000, now_ms)
    else:
        tick = _latest_cron(spec, now_ms)
    if tick is None or (spec.start_ms is not None and tick < spec.start_ms):
        return None
    return tick


def _latest_interval(spec: AlarmSpec, period_ms: int, now_ms: int) -> int | None:
    anchor = spec.start_ms if spec.start_ms is not None else spec.created_ms + period_ms
    if now_ms < anchor:
        return None
    return anchor + (now_ms - anchor) // period_ms * period_ms


def _latest_cron(spec: AlarmSpec, now_ms: int) -> int | None:
    assert spec.cron is not None
    zone = ZoneInfo(spec.timezone) if spec.timezone else UTC
    # Just past now: a tick falling exactly on now counts as due.
    after = datetime.fromtimestamp((now_ms + 1) / 1000, tz=zone)
    previous = croniter(spec.cron, after, second_at_beginning=True).get_prev(float)
    return round(previous * 1000)


def alarm_config(spec: AlarmSpec) -> dict[str, Any]:
    """What the feed's READ shows of an alarm (its `config`)."""
    config: dict[str, Any] = {"payload": spec.payload}
    if spec.minutes is not None:
        config["minutes"] = spec.minutes
    else:
        config["cron"] = spec.cron
    for key, value in (("timezone", spec.timezone), ("startDate", spec.start_ms),
                       ("stopDate", spec.stop_ms)):
        if value is not None:
            config[key] = value
    return config
