"""The prefill-time model T(b) = T0 + α·(b−1) and its least-squares fit (stdlib only).

The profiler in the container measures T(b) and the invoker's batching uses it to size
batches, so both import the one definition here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
