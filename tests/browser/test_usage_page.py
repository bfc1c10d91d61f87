"""The usage page's dedicated comparison in headless Chromium, at desktop and phone widths.

A function first used five minutes ago (its usage rows written straight to the registry):
the dedicated deployment is counted from then, not for the whole 30-day window, both
figures read as money, and the chart's bars are all drawn. Screenshots go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from lorafaas.billing.ledger import ACTIVATION, usage_row
from lorafaas.billing.metering import Usage, cost_of
from lorafaas.billing.prices import price_sheet
from lorafaas.controller.appkeys import sessions_key
from tests.browser.test_console import Shots, browser_page  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.docker, pytest.mark.browser]
WIDTHS = {"desktop": 1200, "phone": 390}


async def store_usage(platform: Any) -> None:  # type: ignore[misc]
    """Two activations of guest/fresh, the first five minutes ago."""
    prices = price_sheet(platform.settings)
    now_ms = int(time.time() * 1000)
    rows = []
    for i, start in enumerate((now_ms - 300_000, now_ms - 60_000)):
        usage = Usage(0.05, 0.1, 12, 21)
        rows.append(usage_row(ACTIVATION, platform.settings.guest_namespace, "fresh", start,
                              start + 400, 2048, usage, cost_of(usage, prices), prices,
                              activation_id=f"fresh{i}", start_kind="warm", status_code=0))
    async with platform.app[sessions_key]() as session, session.begin():
        session.add_all(rows)


def money_value(text: str) -> float:
    """The number in "$1,054.62" or "$0.00137"."""
    return float(text.strip().lstrip("$").replace(",", ""))


async def test_the_dedicated_comparison_counts_a_new_function_from_its_first_use(  # type: ignore[no-untyped-def]
        platform, browser_page) -> None:  # noqa: F811  (the fixture imported above)
    from playwright.async_api import expect

    page = browser_page
    await store_usage(platform)
    base = str(platform.client.make_url("")).rstrip("/")
    await page.goto(f"{base}/console/sign-in")
    await page.fill("#key", platform.credential)
    await page.click("form.card button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console/functions$"))
    shots = Shots(page, "usage-dedicated")
    for width_name, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto(f"{base}/console/usage")
        serverless = money_value(await page.locator("#cost-serverless").inner_text())
        dedicated = money_value(await page.locator("#cost-dedicated").inner_text())
        whole = money_value(await page.locator("#cost-whole-period").inner_text())
        # Five minutes of a 2 GB function against 30 days of it: about 8,600× less.
        assert 0 < serverless < dedicated < whole
        assert 5_000 < whole / dedicated < 10_000
        savings = await page.locator("#savings").inner_text()
        assert re.fullmatch(r"\d+\.\d+ % \(dedicated costs [\d,]+× as much\)", savings), savings
        heights = await page.evaluate("""() => {
            const chart = Chart.getChart('chart-dedicated');
            return chart.getDatasetMeta(0).data.map((bar) => bar.height);
        }""")
        assert len(heights) == 3 and min(heights) > 5, heights  # every bar can be seen
        await shots.take(width_name)
