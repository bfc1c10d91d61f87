"""The alarms feed's parameters, refused as the alarms package refuses them, and its ticks."""

from __future__ import annotations

from typing import Any

import pytest

from lorafaas.controller.alarm_feed import (
    CRON_FEED,
    INTERVAL_FEED,
    latest_tick,
    parse_alarm,
)
from lorafaas.errors import BadRequest

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, on a whole minute


def test_interval_and_dates() -> None:
    spec = parse_alarm(INTERVAL_FEED, {"minutes": 2}, T0)
    assert latest_tick(spec, T0 + 119_000) is None
    assert latest_tick(spec, T0 + 250_000) == T0 + 240_000
    start = "2026-01-01T00:10:00Z"
    spec = parse_alarm(CRON_FEED, {"cron": "* * * * *", "startDate": start,
                                   "stopDate": "2026-01-01T00:12:30+00:00"}, T0)
    assert latest_tick(spec, T0 + 9 * 60_000) is None
    assert latest_tick(spec, T0 + 11 * 60_000 + 5) == T0 + 11 * 60_000
    assert latest_tick(spec, T0 + 20 * 60_000) == T0 + 12 * 60_000  # stopped at 00:12:30
    assert parse_alarm(CRON_FEED, {"cron": "0 * * * *", "trigger_payload": "hi"},
                       T0).payload == {"payload": "hi"}


@pytest.mark.parametrize(("feed", "params", "message"), [
    (CRON_FEED, {}, "alarms trigger feed is missing the cron parameter"),
    (CRON_FEED, {"cron": "every day"}, "cron pattern 'every day' is not valid"),
    (INTERVAL_FEED, {}, "interval trigger feed is missing the minutes parameter"),
    (INTERVAL_FEED, {"minutes": "1.5"}, "the minutes parameter must be an integer"),
    (INTERVAL_FEED, {"minutes": -3}, "the minutes parameter must be an integer greater than zero"),
    (CRON_FEED, {"cron": "* * * * *", "startDate": "2020-01-01T00:00:00Z"},
     "startDate parameter '2020-01-01T00:00:00Z' must be in the future"),
    (CRON_FEED, {"cron": "* * * * *", "stopDate": "soon"},
     "stopDate parameter 'soon' is not a valid Date"),
    (CRON_FEED, {"cron": "* * * * *", "timezone": "Mars/Base"},
     "timezone 'Mars/Base' is not valid"),
])
def test_feed_parameters_refused(feed: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as error:
        parse_alarm(feed, params, T0)
    assert error.value.message == message
