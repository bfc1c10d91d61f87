"""Action limits are checked with OpenWhisk's ranges and messages."""

from __future__ import annotations

import pytest

from lorafaas.controller.protocol import limit_ranges, parse_limits
from lorafaas.errors import BadRequest

RANGES = limit_ranges(default_timeout_ms=60_000, default_memory_mb=2048)


def test_defaults_fill_missing_limits() -> None:
    assert parse_limits({"timeout": 1000}, RANGES) == {
        "timeout": 1000, "memory": 2048, "concurrency": 1, "max_tokens": 512,
        "slo_ttft_ms": 2000, "logs": 10}


@pytest.mark.parametrize("limits,message", [
    ({"timeout": 50}, "duration 50 milliseconds below allowed threshold of 100 milliseconds"),
    ({"memory": 100_000}, "memory 100000 MB exceeds allowed threshold of 65536 MB"),
    ({"concurrency": 0}, "concurrency 0 activations below allowed threshold of 1 activations"),
])
def test_out_of_range_uses_openwhisk_wording(limits: dict[str, int], message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_limits(limits, RANGES)
    assert refused.value.message == ("The request content was malformed:\nrequirement failed: "
                                     + message)


def test_unknown_and_non_integer_limits() -> None:
    with pytest.raises(BadRequest, match="unknown limits: logsize"):
        parse_limits({"logsize": 10}, RANGES)
    with pytest.raises(BadRequest, match="must be an integer"):
        parse_limits({"timeout": "fast"}, RANGES)


def test_the_slo_limit_defaults_to_the_setting_and_is_range_checked() -> None:
    ranges = limit_ranges(60_000, 2048, default_slo_ttft_ms=500)
    assert parse_limits({}, ranges)["slo_ttft_ms"] == 500
    with pytest.raises(BadRequest) as refused:
        parse_limits({"slo_ttft_ms": 0}, ranges)
    assert refused.value.message.endswith(
        "requirement failed: slo_ttft_ms 0 milliseconds below allowed threshold of 1 "
        "milliseconds")
