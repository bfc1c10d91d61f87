"""Fill-or-expire batching, contention ordering and SLO accounting, on constructed cases."""

from __future__ import annotations

import random

import pytest

from lorafaas.invoker.batching import (
    FunctionQueue,
    PrefillModel,
    SloLedger,
    contention,
    dispatch_order,
    fit_prefill_model,
    max_batch_size,
    order_by_deadline_margin,
)

# T(b) = 20 + 10·(b−1) ms; with a 100 ms SLO, N = ⌊80/10⌋ + 1 = 9.
MODEL = PrefillModel(t0_ms=20.0, alpha_ms=10.0)


def queue(name: str = "f", slo_ms: float = 100.0, model: PrefillModel = MODEL,
          cap: int = 16) -> FunctionQueue[str]:
    """A queue of request names."""
    return FunctionQueue(name, slo_ms, model, cap)


def test_fit_recovers_t0_and_alpha_from_noisy_samples() -> None:
    """Least squares on T0 = 35, α = 12 plus ±1 ms noise gives both back, R² near 1."""
    rng = random.Random(3)
    samples = [(b, 35 + 12 * (b - 1) + rng.uniform(-1, 1)) for b in range(1, 17) for _ in "ab"]
    model, r2 = fit_prefill_model(samples)
    assert model.t0_ms == pytest.approx(35, abs=1.0)
    assert model.alpha_ms == pytest.approx(12, abs=0.1)
    assert 0.999 < r2 <= 1.0


def test_fit_is_exact_on_a_line_and_r2_drops_on_noise() -> None:
    """Exact samples give R² = 1; samples unrelated to b give a low R²."""
    model, r2 = fit_prefill_model([(b, 5.0 + 2.0 * (b - 1)) for b in (1, 2, 4, 8)])
    assert (model.t0_ms, model.alpha_ms, r2) == pytest.approx((5.0, 2.0, 1.0))
    _, r2 = fit_prefill_model([(1, 10.0), (2, 30.0), (3, 10.0), (4, 30.0), (5, 10.0)])
    assert r2 < 0.2


def test_fit_of_constant_times_and_too_few_sizes() -> None:
    """Constant times fit α = 0 exactly; one batch size cannot be fitted."""
    model, r2 = fit_prefill_model([(1, 7.0), (4, 7.0), (9, 7.0)])
    assert (model.t0_ms, model.alpha_ms, r2) == pytest.approx((7.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="two or more batch sizes"):
        fit_prefill_model([(4, 1.0), (4, 2.0)])


def test_prefill_model_time() -> None:
    """T(b) = T0 + α·(b−1)."""
    assert [MODEL.time(b) for b in (1, 2, 9)] == [20.0, 30.0, 100.0]


@pytest.mark.parametrize(("slo_ms", "cap", "expected"), [
    (100.0, 16, 9),     # ⌊(100 − 20)/10⌋ + 1
    (109.9, 16, 9),     # the floor
    (110.0, 16, 10),
    (100.0, 4, 4),      # the cap
    (20.0, 16, 1),      # SLO = T0: only one request fits
    (5.0, 16, 1),       # SLO below T0: still one, never zero
])
def test_max_batch_size(slo_ms: float, cap: int, expected: int) -> None:
    """N = ⌊(SLO − T0)/α⌋ + 1, within 1…cap."""
    assert max_batch_size(slo_ms, MODEL, cap) == expected
    # The largest size whose T(N) meets the SLO: one more would not (unless capped).
    assert expected == 1 or MODEL.time(expected) <= slo_ms
    assert expected == cap or MODEL.time(expected + 1) > slo_ms


def test_max_batch_size_without_per_request_cost_is_the_cap() -> None:
    """α ≈ 0: batching costs nothing, only the configured cap limits N."""
    assert max_batch_size(100.0, PrefillModel(20.0, 0.0), 12) == 12
    with pytest.raises(ValueError, match="at least 1"):
        max_batch_size(100.0, MODEL, 0)


def test_contention_counts_the_new_batch_and_is_capped() -> None:
    """M = running + 1, at most the configured number of concurrent batches."""
    assert [contention(r, 3) for r in (0, 1, 2, 5)] == [1, 2, 3, 3]


def test_queue_closes_when_full() -> None:
    """With N = 3 (cap), the third request closes the batch before any slack runs out."""
    q = queue(cap=3)
    for i, now in enumerate((0.0, 1.0)):
        q.push(f"r{i}", now)
        assert not q.ready(now, m=1)
    q.push("r2", 2.0)
    assert q.ready(2.0, m=1)
    batch = q.take_batch(2.0)
    assert [r.item for r in batch.requests] == ["r0", "r1", "r2"]
    assert batch.waits_ms() == [2.0, 1.0, 0.0]
    assert len(q) == 0 and not q.ready(3.0, m=1)


def test_queue_closes_when_the_oldest_slack_runs_out() -> None:
    """N = 9, T(9) = 100: the slack SLO − wait − M·T(N) of a 200 ms SLO ends at wait 100."""
    q = queue(slo_ms=200.0, cap=9)
    q.push("old", 0.0)
    q.push("new", 60.0)
    assert q.slack(99.0, m=1) == pytest.approx(1.0)
    assert not q.ready(99.0, m=1)
    assert q.ready(100.0, m=1)
    assert q.expires_at(m=1) == pytest.approx(100.0)
    assert [r.item for r in q.take_batch(100.0).requests] == ["old", "new"]


def test_contention_shortens_the_wait() -> None:
    """With M = 2 the predicted time doubles, so the same batch closes at wait 0, not 100."""
    q = queue(slo_ms=200.0, cap=9)
    q.push("only", 0.0)
    assert not q.ready(0.0, m=1)
    assert q.ready(0.0, m=2)
    assert q.expires_at(m=2) == pytest.approx(0.0)


def test_take_batch_takes_at_most_n_oldest() -> None:
    """Requests beyond N stay queued, in order, for the next batch."""
    q = queue(cap=2)
    for i in range(5):
        q.push(f"r{i}", float(i))
    assert [r.item for r in q.take_batch(5.0).requests] == ["r0", "r1"]
    assert [r.item for r in q.take_batch(5.0).requests] == ["r2", "r3"]
    assert [r.item for r in q.take_batch(5.0).requests] == ["r4"]
    with pytest.raises(ValueError, match="empty"):
        q.take_batch(5.0)


def test_queue_rejects_out_of_order_arrivals_and_bad_m() -> None:
    """Arrival order is the queue order; M below 1 is a caller's bug."""
    q = queue()
    q.push("a", 10.0)
    with pytest.raises(ValueError, match="arrival order"):
        q.push("b", 9.0)
    with pytest.raises(ValueError, match="at least 1"):
        q.ready(10.0, m=0)


def test_deadline_margin_order() -> None:
    """Δ = SLO − (wait + M·T(b)), least first; the batch size b is what it would take."""
    tight = queue("tight", slo_ms=100.0)       # 1 request waiting 50: Δ = 100 − (50 + 2·20) = 10
    tight.push("t", 0.0)
    big = queue("big", slo_ms=300.0)           # 5 waiting 10: Δ = 300 − (10 + 2·60) = 170
    for i in range(5):
        big.push(f"b{i}", 40.0)
    late = queue("late", slo_ms=50.0)          # 1 waiting 45: Δ = 50 − (45 + 2·20) = −35
    late.push("l", 5.0)
    empty = queue("empty")
    assert late.deadline_margin(50.0, m=2) == pytest.approx(-35.0)
    assert tight.deadline_margin(50.0, m=2) == pytest.approx(10.0)
    assert big.deadline_margin(50.0, m=2) == pytest.approx(170.0)
    ordered = order_by_deadline_margin([big, empty, tight, late], 50.0, m=2)
    assert [q.function for q in ordered] == ["late", "tight", "big"]


def test_contention_can_reorder_queues() -> None:
    """A big batch of a loose SLO is hurt more by M than a single request of a tight one."""
    single = queue("single", slo_ms=60.0)
    single.push("s", 0.0)
    big = queue("big", slo_ms=200.0, cap=16)
    for i in range(12):
        big.push(f"b{i}", 0.0)
    # M = 1: Δ(single) = 60 − 20 = 40, Δ(big) = 200 − 130 = 70 → single first.
    assert [q.function for q in order_by_deadline_margin([big, single], 0.0, 1)] == \
        ["single", "big"]
    # M = 3: Δ(single) = 60 − 60 = 0, Δ(big) = 200 − 390 = −190 → big first.
    assert [q.function for q in order_by_deadline_margin([big, single], 0.0, 3)] == \
        ["big", "single"]


def test_dispatch_order_keeps_only_ready_queues() -> None:
    """A queue that can still wait to fill is not dispatched."""
    filling = queue("filling", slo_ms=1000.0)
    filling.push("f", 0.0)
    full = queue("full", cap=1)
    full.push("x", 0.0)
    assert [q.function for q in dispatch_order([filling, full], 1.0, 1)] == ["full"]


def test_late_requests_are_served_and_counted_as_misses() -> None:
    """Requests past their SLO still leave in a batch; the ledger counts them, drops none."""
    q = queue(slo_ms=100.0, cap=4)
    q.push("late", 0.0)
    q.push("on-time", 150.0)
    assert q.ready(150.0, m=1)
    batch = q.take_batch(150.0)
    assert [r.item for r in batch.requests] == ["late", "on-time"]
    ledger = SloLedger()
    assert ledger.record_batch(batch, first_token_ms=190.0) == 1
    assert ledger.record("g", arrived_ms=0.0, first_token_ms=100.0, slo_ms=100.0) is False
    counts = ledger.counts("f")
    assert (counts.served, counts.missed) == (2, 1)
    assert (ledger.total().served, ledger.total().missed) == (3, 1)
    assert (ledger.counts("unknown").served, ledger.counts("unknown").missed) == (0, 0)
