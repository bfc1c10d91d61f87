"""The arithmetic of metering: batched steps split by tokens, GB-seconds, cost, prices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lorafaas.billing.metering import (
    Step,
    Usage,
    activation_usage,
    attribute_steps,
    cost_of,
    gb_seconds,
    split_by_tokens,
)
from lorafaas.billing.prices import MEMORY_GB_SECOND, PriceSheet, price_sheet
from lorafaas.names import QualifiedName
from lorafaas.settings import SettingsError, load_settings

PRICES = PriceSheet("h100", accelerator_hour=3.6, gb_second=0.001, prompt_mtok=0.5,
                    completion_mtok=2.0)


def test_a_step_is_split_by_the_tokens_each_sequence_processed() -> None:
    assert split_by_tokens(1.0, [30, 10]) == pytest.approx([0.75, 0.25])
    assert split_by_tokens(0.3, [1, 1, 1]) == pytest.approx([0.1, 0.1, 0.1])


def test_a_step_where_nobody_processed_a_token_is_split_evenly() -> None:
    assert split_by_tokens(0.4, [0, 0]) == [0.2, 0.2]


@pytest.mark.parametrize("duration,tokens", [(-1.0, [1]), (1.0, []), (1.0, [3, -1])])
def test_a_bad_step_is_refused(duration: float, tokens: list[int]) -> None:
    with pytest.raises(ValueError):
        split_by_tokens(duration, tokens)


def test_a_batch_prefill_then_decode_steps_with_sequences_leaving() -> None:
    # Prefill of a batch of three prompts (100, 50, 50 tokens) in 0.8 s; then decode steps
    # of one token per live sequence: c leaves after 2 steps, b after 3, a runs 4.
    steps = [Step(0.8, {"a": 100, "b": 50, "c": 50}),
             Step(0.06, {"a": 1, "b": 1, "c": 1}), Step(0.06, {"a": 1, "b": 1, "c": 1}),
             Step(0.04, {"a": 1, "b": 1}), Step(0.02, {"a": 1})]
    seconds = attribute_steps(steps)
    assert seconds["a"] == pytest.approx(0.4 + 0.02 + 0.02 + 0.02 + 0.02)
    assert seconds["b"] == pytest.approx(0.2 + 0.02 + 0.02 + 0.02)
    assert seconds["c"] == pytest.approx(0.2 + 0.02 + 0.02)
    # Conservation: the shares add up to the measured steps.
    assert math.fsum(seconds.values()) == pytest.approx(sum(s.duration_s for s in steps))


def test_a_sequence_alone_is_billed_every_step() -> None:
    steps = [Step(0.5, {"x": 12}), Step(1.5, {"x": 20})]
    assert attribute_steps(steps) == {"x": pytest.approx(2.0)}


def test_gb_seconds_are_the_memory_limit_times_the_share_of_busy_time() -> None:
    assert gb_seconds(2048, 3.0) == pytest.approx(6.0)
    assert gb_seconds(512, 2.0, share=0.25) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        gb_seconds(512, 2.0, share=1.5)


def test_cost_is_usage_times_the_price_sheet() -> None:
    cost = cost_of(Usage(accelerator_s=10.0, gb_s=100.0, prompt_tokens=2000,
                         completion_tokens=500), PRICES)
    assert cost.accelerator == pytest.approx(0.01)  # 3.6 USD/h = 0.001 USD/s
    assert cost.memory == pytest.approx(0.1)
    assert cost.prompt == pytest.approx(0.001)
    assert cost.completion == pytest.approx(0.001)
    assert cost.total == pytest.approx(0.112)


def test_an_activation_is_metered_from_the_runtime_timings() -> None:
    timings = {"ttft": 120.0, "prefill": 120.0, "decode": 880.0, "total": 1000.0}
    usage = activation_usage(timings, 1024, {"usage": {"prompt_tokens": 9,
                                                       "completion_tokens": 24}})
    assert usage == Usage(accelerator_s=pytest.approx(1.0), gb_s=pytest.approx(1.0),  # type: ignore[arg-type]
                          prompt_tokens=9, completion_tokens=24)


def test_a_batched_runtime_reporting_its_share_is_trusted() -> None:
    timings = {"prefill": 500.0, "decode": 500.0, "total": 1000.0, "compute": 250.0}
    assert activation_usage(timings, 1024, {}).accelerator_s == pytest.approx(0.25)


def test_an_activation_that_never_ran_uses_nothing() -> None:
    assert activation_usage({}, 2048, {"error": "boom"}) == Usage(0.0, 0.0, 0, 0)


def test_default_prices_follow_the_accelerator_kind(tmp_path: Path) -> None:
    cpu = price_sheet(load_settings({"LORAFAAS_HOME": str(tmp_path)}))
    h100 = price_sheet(load_settings({"LORAFAAS_ACCELERATOR_KIND": "h100"}))
    assert (cpu.accelerator_kind, cpu.accelerator_hour) == ("cpu", 0.0735)
    assert h100.accelerator_hour == 2.99
    assert cpu.gb_second == h100.gb_second == MEMORY_GB_SECOND
    assert cpu.prompt_mtok == cpu.completion_mtok == 0.0


def test_configured_prices_override_the_kind() -> None:
    prices = price_sheet(load_settings({"LORAFAAS_PRICE_ACCELERATOR_HOUR": "1.5",
                                        "LORAFAAS_PRICE_GB_SECOND": "0.00002",
                                        "LORAFAAS_PRICE_PROMPT_MTOK": "0.1"}))
    assert (prices.accelerator_hour, prices.gb_second, prices.prompt_mtok) == (1.5, 0.00002, 0.1)


@pytest.mark.parametrize("key,value", [("LORAFAAS_PRICE_GB_SECOND", "-1"),
                                       ("LORAFAAS_PRICE_ACCELERATOR_HOUR", "nan"),
                                       ("LORAFAAS_ACCELERATOR_KIND", "tpu")])
def test_a_bad_price_names_key_and_value(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{key}='{value}'"):
        load_settings({key: value})


# The ledger: usage rows of an activation, and idle containers sampled as overhead.

def test_an_activation_gets_a_billed_row_and_its_cold_start_an_overhead_row() -> None:
    from lorafaas.billing.ledger import meter_activation
    from lorafaas.invoker.invoker import ActivationRequest, ActivationResult
    from lorafaas.invoker.pool import FunctionRef

    request = ActivationRequest("id1", "ns", "fn", "0.0.1", "subject",
                                FunctionRef("ns/fn@0.0.1:d", QualifiedName.from_path("ns/fn"), Path("/x"), 2048),
                                {}, {"timeout": 1000}, 0.0)
    result = ActivationResult(
        1000, 3000, 0, {"result": {"usage": {"prompt_tokens": 5, "completion_tokens": 7}}},
        [], [{"key": "startKind", "value": "cold"}, {"key": "initTime", "value": 500}],
        {"prefill": 250.0, "decode": 750.0, "total": 1000.0})
    metered = meter_activation(request, result, PRICES)
    billed, init = metered.rows
    assert (billed.kind, billed.activation_id, billed.start_kind) == ("activation", "id1", "cold")
    assert billed.accelerator_s == pytest.approx(1.0) and billed.gb_s == pytest.approx(2.0)
    assert billed.cost_total == pytest.approx(0.001 + 0.002 + 5 * 0.5e-6 + 7 * 2e-6)
    assert metered.annotation["total"] == pytest.approx(billed.cost_total)
    assert (init.kind, init.activation_id, init.accelerator_s) == ("init", None, 0.0)
    assert init.gb_s == pytest.approx(1.0)  # 2 GB × 0.5 s, not billed


class FakeContainer:
    """What the idle meter reads of a pooled container."""

    def __init__(self, cid: str, state: str, path: str | None, memory_mb: int) -> None:
        from types import SimpleNamespace

        self.info = SimpleNamespace(id=cid)
        self.state = SimpleNamespace(value=state)
        self.function_path = path
        self.memory_mb = memory_mb


def test_idle_containers_are_sampled_as_overhead_by_state() -> None:
    from lorafaas.billing.ledger import IdleMeter

    warm = FakeContainer("w", "warm", "ns/fn", 1024)
    stem = FakeContainer("s", "prewarmed", None, 2048)
    busy = FakeContainer("b", "busy", "ns/fn", 1024)
    meter = IdleMeter(lambda: [warm, stem, busy], None, PRICES)  # type: ignore[arg-type]
    for now in (100.0, 101.0, 102.0, 103.0):
        meter.sample(now)
    rows = {row.kind: row for row in meter.take_rows()}
    assert set(rows) == {"idle_warm", "idle_prewarm"}  # busy time is the activation's
    assert (rows["idle_warm"].namespace, rows["idle_warm"].action) == ("ns", "fn")
    assert rows["idle_warm"].gb_s == pytest.approx(3.0)
    assert rows["idle_prewarm"].namespace == "(platform)"
    assert rows["idle_prewarm"].gb_s == pytest.approx(6.0)
    assert rows["idle_prewarm"].cost_total == pytest.approx(0.006)
    meter.sample(104.0)  # the next rows go on from the last sample
    assert [row.gb_s for row in meter.take_rows()] == pytest.approx([1.0, 2.0])
    assert meter.take_rows() == []  # nothing sampled since


def test_a_batch_is_metered_by_shares_that_add_up_to_its_busy_time() -> None:
    # Three requests of one batch: each ran until it ended (`total`), but the container was
    # busy for all of them at once; their shares of its 900 ms of steps add up to 900 ms.
    shares = [450.0, 300.0, 150.0]
    usages = [activation_usage({"ttft": 100.0, "total": total, "compute": share}, 2048,
                               {"usage": {"prompt_tokens": 4, "completion_tokens": 8}})
              for total, share in zip([950.0, 700.0, 400.0], shares, strict=True)]
    assert sum(u.accelerator_s for u in usages) == pytest.approx(0.9)
    assert sum(u.gb_s for u in usages) == pytest.approx(2 * 0.9)
