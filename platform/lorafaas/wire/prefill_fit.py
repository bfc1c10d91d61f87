"""The prefill-time model T(b) = T0 + α·(b−1), its least-squares fit and the profile of
one prompt length (stdlib only).

The profiler in the container measures T(b), the invoker's batching uses it to size
batches, and the controller stores the profiles the container reports (in the JSON of
`PrefillProfile.as_dict`), so all of them import the one definition here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrefillModel:
    """Predicted prefill time, in milliseconds, of a batch of b requests."""

    t0_ms: float
    alpha_ms: float

    def time(self, batch_size: int) -> float:
        """T(b) = T0 + α·(b−1)."""
        return self.t0_ms + self.alpha_ms * (batch_size - 1)


def fit_prefill_model(samples: Sequence[tuple[int, float]]) -> tuple[PrefillModel, float]:
    """Least-squares fit of (batch size, milliseconds) samples; return the model and R²."""
    if len({b for b, _ in samples}) < 2:
        raise ValueError("fitting T(b) needs samples at two or more batch sizes")
    xs = [float(b - 1) for b, _ in samples]
    ys = [float(ms) for _, ms in samples]
    x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    sxy = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys, strict=True))
    alpha = sxy / sxx
    model = PrefillModel(t0_ms=y_mean - alpha * x_mean, alpha_ms=alpha)
    return model, _r_squared(model, samples, y_mean)


def _r_squared(model: PrefillModel, samples: Sequence[tuple[int, float]],
               y_mean: float) -> float:
    residual = sum((ms - model.time(b)) ** 2 for b, ms in samples)
    total = sum((ms - y_mean) ** 2 for _, ms in samples)
    # Constant times are fitted exactly by α = 0: call that a perfect fit, not 0/0.
    return 1.0 if total == 0 else 1.0 - residual / total


@dataclass(frozen=True)
class PrefillProfile:
    """T(b) measured at one prompt length (median ms per batch size) and its fit."""

    prompt_length: int
    samples: list[tuple[int, float]]
    model: PrefillModel
    r2: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"prompt_length": self.prompt_length, "t0_ms": self.model.t0_ms,
                "alpha_ms": self.model.alpha_ms, "r2": self.r2,
                "samples": [list(s) for s in self.samples]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrefillProfile:
        """Read the JSON form back; ValueError (or KeyError, TypeError) when malformed."""
        samples = [(int(b), float(ms)) for b, ms in data["samples"]]
        return cls(int(data["prompt_length"]), samples,
                   PrefillModel(float(data["t0_ms"]), float(data["alpha_ms"])),
                   float(data["r2"]))


def format_profile(profile: PrefillProfile) -> str:
    """The table of measured and fitted T(b), then the fit and its R²."""
    lines = [f"prompt length {profile.prompt_length} tokens", "  b  measured ms  fitted ms"]
    lines += [f"{b:>3}  {ms:>11.2f}  {profile.model.time(b):>9.2f}" for b, ms in profile.samples]
    lines.append(f"fit: T(b) = {profile.model.t0_ms:.2f} + {profile.model.alpha_ms:.2f}·(b−1) ms"
                 f"   R² = {profile.r2:.4f}")
    return "\n".join(lines)
