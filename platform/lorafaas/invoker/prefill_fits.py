"""Profiled prefill fits: what a profile is valid for, and which fit a function's batches use.

A fit of T(b) = T0 + α·(b−1) holds for one backbone checkpoint, runtime image and machine
(the `PrefillKey`) and one adapter rank, at one prompt length. A changed checkpoint, image
or machine gives another key, under which no fit is stored: the rank is profiled afresh.

Of a rank's fits, the one at the longest profiled prompt length sizes its batches: prefill
time grows with the prompt, so that fit predicts the slowest batches among the profiled
lengths, and batches sized by it still meet their SLO when prompts are shorter (the
controller does not know a function's prompts before they come).

A fit is believed only when it is sound (`fit_problem`): T0 and α within bounds of the
default T(b), R² high enough that the line describes the samples, and measured recently
enough. A fit measured on a loaded machine is not: it would size every batch to 1 for
good, so the default T(b) sizes them until a re-measurement gives a sound fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lorafaas.invoker.batching import implausible_model
from lorafaas.wire.prefill_fit import PrefillModel, PrefillProfile

MIN_R2 = 0.8  # below this the samples do not lie on a line: the machine was busy
MAX_AGE_MS = 7 * 24 * 3600 * 1000  # older fits are measured again (and kept meanwhile)


@dataclass(frozen=True)
class PrefillKey:
    """What makes a prefill profile stale when it changes."""

    backbone: str  # the backbone's name (its folder's)
    backbone_digest: str  # lorafaas.backbone.checkpoint.checkpoint_digest
    image: str  # the runtime image's content id (sha256:…), not a tag that may move
    machine: str  # lorafaas.wire.machine.describe_machine, torch threads included


@dataclass(frozen=True)
class PrefillFit:
    """One stored profile: an adapter rank's T(b) at one prompt length."""

    rank: int
    profile: PrefillProfile
    measured_ms: int  # epoch ms

    @property
    def model(self) -> PrefillModel:
        """The fitted T(b)."""
        return self.profile.model


def fit_problem(fit: PrefillFit, default: PrefillModel) -> str | None:
    """Why a fit is not to be believed (see the module doc); None when it is sound."""
    problem = implausible_model(fit.model, default)
    if problem is None and not fit.profile.r2 >= MIN_R2:
        problem = f"R² {fit.profile.r2:.3f} below {MIN_R2}"
    return problem


def is_stale(fit: PrefillFit, now_ms: int) -> bool:
    """Whether a fit is old enough to be measured again."""
    return now_ms - fit.measured_ms > MAX_AGE_MS


def choose_fit(fits: Iterable[PrefillFit]) -> PrefillFit | None:
    """The fit at the longest prompt length (see the module doc); None without fits."""
    return max(fits, key=lambda fit: fit.profile.prompt_length, default=None)


class FitTable:
    """The fits of the current key, by adapter rank."""

    def __init__(self, fits: Iterable[PrefillFit] = ()) -> None:
        self._by_rank: dict[int, list[PrefillFit]] = {}
        self.add(fits)

    def add(self, fits: Iterable[PrefillFit]) -> None:
        """Take fits in, replacing those of the same rank and prompt length."""
        for fit in fits:
            kept = [f for f in self._by_rank.get(fit.rank, [])
                    if f.profile.prompt_length != fit.profile.prompt_length]
            self._by_rank[fit.rank] = [*kept, fit]

    def has(self, rank: int) -> bool:
        """Whether the rank has been profiled under the current key."""
        return bool(self._by_rank.get(rank))

    def chosen(self, rank: int) -> PrefillFit | None:
        """The fit that sizes the batches of functions of this rank, if profiled."""
        return choose_fit(self._by_rank.get(rank, []))

    def ranks(self) -> list[int]:
        """The profiled ranks, ascending."""
        return sorted(rank for rank, fits in self._by_rank.items() if fits)
