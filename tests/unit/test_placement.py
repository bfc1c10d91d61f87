"""Placement by load on a fake clock: quiet functions share their namespace's container, a
busy one gets its own containers and comes back when it quiets, bursts and a rate at a
threshold move nothing, and isolation holds whatever the rate."""

from __future__ import annotations

import pytest

from lorafaas.invoker.placement import (
    FunctionTraits,
    Placement,
    PlacementConfig,
    PlacementPolicy,
    SharedContainers,
    Target,
)

CONFIG = PlacementConfig(mode=SharedContainers.NAMESPACE, fill_window_s=1.0, own_at=2.0,
                         share_at=1.0, dwell_s=30.0, rate_tau_s=10.0)
A1 = FunctionTraits("alice/chat@1", "alice", "demo")
A2 = FunctionTraits("alice/code@1", "alice", "demo")
B1 = FunctionTraits("bob/chat@1", "bob", "demo")


class Clock:
    """A fake monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drive(policy: PlacementPolicy, clock: Clock, function: FunctionTraits, rate: float,
          seconds: float) -> list[Target]:
    """Requests of `function` at `rate` per second for `seconds`; where each went."""
    targets = []
    for _ in range(round(rate * seconds)):
        clock.now += 1.0 / rate
        targets.append(policy.arrived(function))
    return targets


def fresh(config: PlacementConfig = CONFIG) -> tuple[PlacementPolicy, Clock]:
    clock = Clock()
    return PlacementPolicy(config, clock), clock


def test_a_quiet_function_shares_its_namespaces_container() -> None:
    policy, clock = fresh()
    targets = drive(policy, clock, A1, 0.2, 300)
    assert set(targets) == {Target(Placement.NAMESPACE, "alice/demo")}


def test_a_busy_function_moves_to_its_own_containers_and_back() -> None:
    policy, clock = fresh()
    busy = drive(policy, clock, A1, 5.0, 120)
    kinds = [t.placement for t in busy]
    first_own = kinds.index(Placement.OWN)
    # Not at the first crossing: its credit must reach 30 s past the threshold first.
    assert CONFIG.dwell_s <= first_own / 5.0 <= CONFIG.dwell_s + 15
    assert set(kinds[first_own:]) == {Placement.OWN}, "no flapping while it stays busy"
    assert busy[-1] == Target(Placement.OWN, A1.key)
    quiet = drive(policy, clock, A1, 0.5, 200)
    assert quiet[0].placement is Placement.OWN, "one slower stretch moves nothing yet"
    assert quiet[-1] == Target(Placement.NAMESPACE, "alice/demo")
    described = policy.describe(A1.key)
    assert described is not None and described.moves == 2


def test_a_burst_shorter_than_the_dwell_moves_nothing() -> None:
    policy, clock = fresh()
    for _ in range(5):  # 10 s of 6 req/s, then 50 s quiet, five times over
        burst = drive(policy, clock, A1, 6.0, 10)
        calm = drive(policy, clock, A1, 0.1, 50)
        assert {t.placement for t in burst + calm} == {Placement.NAMESPACE}


def test_a_rate_inside_the_band_does_not_flap() -> None:
    policy, clock = fresh()
    drive(policy, clock, A1, 5.0, 120)
    assert policy.place(A1).placement is Placement.OWN
    targets = drive(policy, clock, A1, 1.5, 600)  # between share_at and own_at
    assert {t.placement for t in targets} == {Placement.OWN}
    policy, clock = fresh()
    targets = drive(policy, clock, A1, 1.5, 600)
    assert {t.placement for t in targets} == {Placement.NAMESPACE}


def test_never_across_namespaces() -> None:
    policy, clock = fresh()
    for function in (A1, A2, B1):
        drive(policy, clock, function, 0.3, 60)
    assert policy.place(A1) == policy.place(A2) == Target(Placement.NAMESPACE, "alice/demo")
    assert policy.place(B1) == Target(Placement.NAMESPACE, "bob/demo")
    # An action of alice's shared package invoked by bob runs in bob's container.
    shared_package = FunctionTraits("alice/pkg/chat@1", "bob", "demo")
    assert drive(policy, clock, shared_package, 0.3, 10)[-1].key == "bob/demo"
    other_backbone = FunctionTraits("alice/big@1", "alice", "big")
    assert policy.place(other_backbone).key == "alice/big"


@pytest.mark.parametrize("function", [
    FunctionTraits("alice/handler@1", "alice", "demo", has_handler=True),
    FunctionTraits("alice/dora@1", "alice", "demo", shareable=False),
])
def test_functions_that_never_share(function: FunctionTraits) -> None:
    policy, clock = fresh()
    targets = drive(policy, clock, function, 0.1, 100)
    assert set(targets) == {Target(Placement.OWN, function.key)}
    assert policy.describe(function.key) is None


def test_off_shares_nothing() -> None:
    policy, clock = fresh(PlacementConfig(mode=SharedContainers.OFF))
    assert drive(policy, clock, A1, 0.1, 100)[-1] == Target(Placement.OWN, A1.key)
    assert PlacementConfig().mode is SharedContainers.OFF, "off by default this session"


def test_forget_drops_the_history_and_bad_bands_are_refused() -> None:
    policy, clock = fresh()
    drive(policy, clock, A1, 5.0, 120)
    policy.forget(A1.key)
    assert policy.place(A1).placement is Placement.NAMESPACE
    with pytest.raises(ValueError, match="flap"):
        PlacementConfig(own_at=1.0, share_at=1.0)
