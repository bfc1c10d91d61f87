"""The usage page's dedicated comparison, as people read it: money at any size, the saving
with the digits that tell it from 100 %, and both dedicated figures."""

from __future__ import annotations

from lorafaas.console.usage import dedicated_figures, money, savings_text


def test_money_reads_at_any_size() -> None:
    assert [money(v) for v in (1054.624, 1.0, 0.5, 0.001374, 0.0000123, 0.0)] == \
        ["$1,054.62", "$1.00", "$0.5", "$0.00137", "$1.23e-05", "$0"]


def test_the_saving_keeps_its_digits_and_gives_the_ratio() -> None:
    assert savings_text(0.001374, 1054.62) == "99.99987 % (dedicated costs 767,555× as much)"
    assert savings_text(0.5, 10.0) == "95.00 % (dedicated costs 20× as much)"
    assert savings_text(8.0, 10.0) == "20.00 %"
    assert savings_text(0.0, 10.0) == "100.00 %"
    assert savings_text(1.0, 0.0) == "—"


def test_both_dedicated_figures_are_on_the_page() -> None:
    report = {"dedicated": {"serverlessCost": 0.001374, "cost": 0.0512,
                            "wholePeriodCost": 1054.62, "assumptions": ["a"]}}
    figures = dedicated_figures(report)
    assert (figures["serverless_text"], figures["dedicated_text"],
            figures["whole_period_text"]) == ("$0.00137", "$0.0512", "$1,054.62")
    assert figures["savings_text"] == "97.32 % (dedicated costs 37× as much)"
