"""The invocation throttle: a sliding minute window and a concurrency cap per namespace."""

from __future__ import annotations

import pytest

from lorafaas.controller.throttle import InvocationThrottle, NamespaceLimits, TooManyRequests


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_per_minute_slides() -> None:
    clock = Clock()
    throttle = InvocationThrottle(NamespaceLimits(3, 100), clock)
    for _ in range(3):
        throttle.admit("guest")
        throttle.release("guest")
    with pytest.raises(TooManyRequests, match=r"last minute \(count: 3, allowed: 3\)"):
        throttle.admit("guest")
    throttle.admit("other")  # namespaces are counted apart
    clock.now += 60.01
    throttle.admit("guest")


def test_concurrency_cap_until_release() -> None:
    throttle = InvocationThrottle(NamespaceLimits(100, 2), Clock())
    throttle.admit("guest")
    throttle.admit("guest")
    with pytest.raises(TooManyRequests, match="concurrent") as refused:
        throttle.admit("guest")
    assert refused.value.status == 429
    throttle.release("guest")
    throttle.admit("guest")
    assert throttle.in_flight("guest") == 2
