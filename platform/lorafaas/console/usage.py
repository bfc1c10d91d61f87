"""Usage and billing: cost per day per function, TTFT, start kinds, dedicated comparison, CSV.

Costs, tokens, start kinds and the dedicated comparison come from the billing report (the
same as `GET /api/v1/namespaces/{ns}/usage`); TTFT, which billing does not keep, from the
activation records.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web

from lorafaas.billing.prices import price_sheet
from lorafaas.billing.reports import (
    ReportQuery,
    build_report,
    load_created,
    load_rows,
    report_csv,
)
from lorafaas.console.data import activations_since
from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import UsageLine, UsagePage
from lorafaas.console.render import render_page
from lorafaas.console.stats import cost_chart, day_of, ttft_buckets
from lorafaas.controller.appkeys import sessions_key, settings_key
from lorafaas.errors import BadRequest

DEFAULT_DAYS = 30
SOURCE = "the billing report (the same as the usage API), and TTFT from the activation records"


def _days(request: web.Request) -> int:
    raw = request.query.get("days", str(DEFAULT_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise BadRequest("The period must be between 1 and 366 days.")
    return int(raw)


async def _report(request: web.Request, days: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    query = ReportQuery(request[console_identity_key].namespace, now_ms - days * 86_400_000,
                        now_ms, "action")
    async with request.app[sessions_key]() as session:
        rows = await load_rows(session, query)
        created = await load_created(session, query.namespace)
    return build_report(query, rows, price_sheet(request.app[settings_key]), created)


def report_lines(report: dict[str, Any]) -> list[UsageLine]:
    """The report's activations summed per day and function."""
    sums: dict[tuple[str, str], list[float]] = {}
    for line in report["activations"]:
        key = (day_of(line["start"]), str(line["action"]))
        s = sums.setdefault(key, [0, 0, 0, 0.0])
        s[0] += 1
        s[1] += line["promptTokens"]
        s[2] += line["completionTokens"]
        s[3] += line["cost"]["total"]
    return [UsageLine(day, name, int(v[0]), int(v[1]), int(v[2]), v[3])
            for (day, name), v in sorted(sums.items())]


def money(usd: float) -> str:
    """A cost people can read at any size: cents from a dollar up, else 3 significant
    digits ($1,054.62, $0.00137)."""
    if usd >= 1:
        return f"${usd:,.2f}"
    return "$0" if usd <= 0 else f"${usd:.3g}" if usd >= 1e-4 else f"${usd:.2e}"


def savings_text(serverless: float, dedicated: float) -> str:
    """The saving against the dedicated cost, with the digits that tell it apart from 100 %,
    and the ratio where it is large."""
    if dedicated <= 0:
        return "—"
    saved = 100 * (1 - serverless / dedicated)
    rest = 100 - saved  # shown to two significant digits, so 99.99987 % is not "100.00 %"
    digits = min(8, max(2, 1 - math.floor(math.log10(rest)))) if rest > 0 else 2
    text = f"{saved:.{digits}f} %"
    if serverless > 0 and dedicated / serverless >= 10:
        text += f" (dedicated costs {dedicated / serverless:,.0f}× as much)"
    return text


def dedicated_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The dedicated comparison of the page: both figures, and how to read them."""
    part = report["dedicated"]
    serverless, dedicated, whole = (part["serverlessCost"], part["cost"],
                                    part["wholePeriodCost"])
    return {"serverless": serverless, "dedicated": dedicated, "whole_period": whole,
            "serverless_text": money(serverless), "dedicated_text": money(dedicated),
            "whole_period_text": money(whole),
            "savings_text": savings_text(serverless, dedicated),
            "assumptions": part["assumptions"]}


def report_start_kinds(report: dict[str, Any]) -> dict[str, int]:
    """Activations per start kind."""
    kinds: dict[str, int] = {}
    for line in report["activations"]:
        kind = str(line["startKind"] or "none")
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def usage_page_context(request: web.Request) -> UsagePage:
    """The usage page's context for the signed-in namespace over `?days=`."""
    days = _days(request)
    report = await _report(request, days)
    since = int((time.time() - days * 86400) * 1000)
    buckets = ttft_buckets(await activations_since(request, request[console_identity_key],
                                                   since))
    lines = report_lines(report)
    kinds = report_start_kinds(report)
    dedicated = dedicated_figures(report)
    chart = {"cost": cost_chart(lines),
             "ttft": {"labels": [b[0] for b in buckets], "data": [b[1] for b in buckets]},
             "startKinds": {"labels": list(kinds), "data": list(kinds.values())},
             "dedicated": {"labels": ["serverless (LoRAFaaS)",
                                      "dedicated, each function from its creation",
                                      "dedicated, every function all period"],
                           "data": [dedicated["serverless"], dedicated["dedicated"],
                                    dedicated["whole_period"]]}}
    return UsagePage(days=days, source=SOURCE, total_cost=report["totals"]["cost"]["total"],
                     total_requests=report["totals"]["activations"], lines=lines,
                     start_kinds=kinds, ttft_buckets=buckets, dedicated=dedicated,
                     chart_data=chart)


async def usage_page(request: web.Request) -> web.Response:
    """The usage page."""
    return await render_page(request, await usage_page_context(request))


async def usage_csv(request: web.Request) -> web.Response:
    """The billing report as CSV (the usage API's `format=csv`)."""
    days = _days(request)
    text = report_csv(await _report(request, days))
    name = f"lorafaas-usage-{request[console_identity_key].namespace}-{days}d.csv"
    return web.Response(text=text, content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
