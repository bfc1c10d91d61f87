"""Where a function's requests run: its own containers, or its namespace's shared container.

A function with traffic enough to fill batches of its own keeps its own containers (the
unshared path); the others share their namespace's container (`runtime.namespace`), where
their requests decode together with their namespace-mates' instead of each starting or
waiting for a container, or running in batches of one.

Per function, the arrival rate is an exponentially decaying estimate (time constant
`rate_tau_s`); `rate × fill_window_s` is how many requests one of its own batches would
gather. A function moves to its own containers when that reaches `own_at` and back to the
shared container when it falls to `share_at` (below `own_at`: a band in which nothing
moves). It does not move at the first crossing: as dLoRA's merge/unmerge credit (OSDI
'24) lets a mode switch only once the other side has been better for long enough, each
function accrues credit (seconds) while its estimate lies past the threshold of the other
side, loses it as fast while it does not, and moves when the credit reaches `dwell_s`; a
move resets it. A burst shorter than that, or a rate hovering at a threshold, moves
nothing.

Isolation comes first, whatever the rate: the shared container is the invoking
namespace's own (one per namespace and backbone; an action of a shared package runs in the
container of the namespace that invoked it), never another's; a function with a user
handler, or one whose adapter the shared container cannot serve, never shares; with the
switch off nothing shares.

Pure: the caller gives the clock; no I/O.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


class SharedContainers(enum.Enum):
    """The operator switch `LORAFAAS_SHARED_CONTAINERS`."""

    NAMESPACE = "namespace"  # functions of one namespace may share a container
    OFF = "off"  # every function has its own containers (the behaviour before sharing)


class Placement(enum.Enum):
    """The kind of container a request runs in."""

    OWN = "own"
    NAMESPACE = "namespace"


@dataclass(frozen=True)
class FunctionTraits:
    """What placement needs to know of a function, as invoked."""

    key: str  # the function (action and version)
    namespace: str  # the invoking namespace (the trust boundary)
    backbone: str
    has_handler: bool = False  # a user handler runs owner code: never shared
    shareable: bool = True  # the shared container can serve its adapter


@dataclass(frozen=True)
class Target:
    """Where a request goes: its function's own containers, or a namespace's container."""

    placement: Placement
    key: str  # the function's key (own), or the shared container's `namespace/backbone`

    @staticmethod
    def shared(namespace: str, backbone: str) -> Target:
        """The shared container of one namespace on one backbone."""
        return Target(Placement.NAMESPACE, f"{namespace}/{backbone}")


@dataclass(frozen=True)
class PlacementConfig:
    """The policy's knobs (see the module doc)."""

    mode: SharedContainers = SharedContainers.OFF
    fill_window_s: float = 1.0  # how long one batch of a function's own gathers requests
    own_at: float = 2.0  # requests per own batch at which a function gets its own containers
    share_at: float = 1.0  # ... at which it goes back to the shared container
    dwell_s: float = 30.0  # credit (s past the other side's threshold) a move needs
    rate_tau_s: float = 30.0  # time constant of the rate estimate

    def __post_init__(self) -> None:
        if not 0 <= self.share_at < self.own_at:
            raise ValueError(f"share_at ({self.share_at}) must be below own_at "
                             f"({self.own_at}), or the policy would flap")


@dataclass
class _State:
    placement: Placement
    rate: float = 0.0  # requests/s at `seen`
    seen: float = 0.0  # when `rate` was last brought up to date
    checked: float = 0.0  # when the credit was last brought up to date
    credit: float = 0.0
    moves: int = 0


@dataclass(frozen=True)
class FunctionPlacement:
    """A function's placement, its rate estimate and the credit towards a move."""

    placement: Placement
    rate: float
    credit: float
    moves: int


class PlacementPolicy:
    """Per-function placement by rate, with credit-based hysteresis (see the module doc)."""

    def __init__(self, config: PlacementConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._functions: dict[str, _State] = {}

    def arrived(self, function: FunctionTraits) -> Target:
        """Count one request of the function and say where it runs."""
        now = self._clock()
        state = self._state(function, now)
        if state is not None:
            self._decay(state, now)
            state.rate += 1.0 / self.config.rate_tau_s
        return self._target(function, state, now)

    def place(self, function: FunctionTraits) -> Target:
        """Where the function's next request would run (counts nothing)."""
        now = self._clock()
        return self._target(function, self._state(function, now), now)

    def describe(self, key: str) -> FunctionPlacement | None:
        """The function's placement and estimates now (None: not seen, or never shares)."""
        state = self._functions.get(key)
        if state is None:
            return None
        self._decay(state, self._clock())
        return FunctionPlacement(state.placement, state.rate, state.credit, state.moves)

    def forget(self, key: str) -> None:
        """The function was deleted or updated: its history goes with it."""
        self._functions.pop(key, None)

    def _state(self, function: FunctionTraits, now: float) -> _State | None:
        """The function's state; None for one that never shares."""
        if (self.config.mode is SharedContainers.OFF or function.has_handler
                or not function.shareable):
            self._functions.pop(function.key, None)
            return None
        state = self._functions.get(function.key)
        if state is None:  # no traffic yet: a first request would start a container alone
            state = self._functions[function.key] = _State(Placement.NAMESPACE, seen=now,
                                                            checked=now)
        return state

    def _target(self, function: FunctionTraits, state: _State | None, now: float) -> Target:
        if state is None:
            return Target(Placement.OWN, function.key)
        self._update(state, now)
        if state.placement is Placement.OWN:
            return Target(Placement.OWN, function.key)
        return Target.shared(function.namespace, function.backbone)

    def _decay(self, state: _State, now: float) -> None:
        state.rate *= math.exp(-(now - state.seen) / self.config.rate_tau_s)
        state.seen = now

    def _update(self, state: _State, now: float) -> None:
        """Accrue or drain the credit since the last check; move when it is enough."""
        self._decay(state, now)
        elapsed, state.checked = now - state.checked, now
        fill = state.rate * self.config.fill_window_s
        if state.placement is Placement.NAMESPACE:
            other_side, target = fill >= self.config.own_at, Placement.OWN
        else:
            other_side, target = fill <= self.config.share_at, Placement.NAMESPACE
        state.credit = state.credit + elapsed if other_side else max(0.0,
                                                                     state.credit - elapsed)
        if other_side and state.credit >= self.config.dwell_s:
            state.placement, state.credit = target, 0.0
            state.moves += 1
