"""Usage reports: totals, groups and per-activation lines, as JSON or CSV, with the cost the
same requests would have had on a dedicated deployment.

Only activations are billed; platform overhead (idle and initializing containers) is
reported apart. Grouping is done here, not in SQL, so SQLite and PostgreSQL agree.

The dedicated deployment holds each function from its creation (its first version in the
registry; its first use in the period where that is earlier, or the registry has no
version of it any more) or the period's start, whichever is later, to the period's end:
a function minutes old costs minutes of a dedicated accelerator, not the whole window. The
figure of every function held for the whole period is reported beside it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lorafaas.billing.ledger import ACTIVATION
from lorafaas.billing.prices import GB_MB, PriceSheet
from lorafaas.errors import BadRequest
from lorafaas.names import QualifiedName
from lorafaas.registry.models import Action, ActionVersion, Namespace, UsageRecord

Function = tuple[str, str | None]  # namespace, action

GROUPINGS = ("action", "day", "hour", "namespace")
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
CSV_COLUMNS = ("line", "key", "activationId", "namespace", "action", "start", "end",
               "startKind", "statusCode", "activations", "promptTokens", "completionTokens",
               "acceleratorSeconds", "gbSeconds", "costAccelerator", "costMemory",
               "costPrompt", "costCompletion", "costTotal", "dedicatedCost")


@dataclass(frozen=True)
class ReportQuery:
    """What a report covers: a namespace (None: all), a start-time range, a grouping."""

    namespace: str | None
    since_ms: int | None
    upto_ms: int | None
    group_by: str = "action"

    def __post_init__(self) -> None:
        if self.group_by not in GROUPINGS:
            raise BadRequest(f"'groupBy' must be one of {', '.join(GROUPINGS)}, "
                             f"not {self.group_by!r}")
        if self.since_ms is not None and self.upto_ms is not None and \
                self.since_ms > self.upto_ms:
            raise BadRequest("'since' must not be after 'upto'")


async def load_rows(session: AsyncSession, query: ReportQuery) -> list[UsageRecord]:
    """The usage rows that started within the query's range, oldest first."""
    statement = select(UsageRecord)
    if query.namespace is not None:
        statement = statement.where(UsageRecord.namespace == query.namespace)
    if query.since_ms is not None:
        statement = statement.where(UsageRecord.start_ms >= query.since_ms)
    if query.upto_ms is not None:
        statement = statement.where(UsageRecord.start_ms <= query.upto_ms)
    return list(await session.scalars(statement.order_by(UsageRecord.start_ms,
                                                         UsageRecord.id)))


async def load_created(session: AsyncSession, namespace: str | None) -> dict[Function, int]:
    """When each function of a namespace (None: of all) was created: its first version."""
    statement = (select(Namespace.name, Action.package, Action.name,
                        func.min(ActionVersion.created_ms))
                 .join(Action, Action.namespace_id == Namespace.id)
                 .join(ActionVersion, ActionVersion.action_id == Action.id)
                 .group_by(Namespace.name, Action.package, Action.name))
    if namespace is not None:
        statement = statement.where(Namespace.name == namespace)
    # Usage rows name an action by its name in its namespace: `pkg/action` in a package.
    return {(ns, QualifiedName(ns, package or None, name).relative): int(created)
            for ns, package, name, created in await session.execute(statement)}


@dataclass(frozen=True)
class Period:
    """The time the report spans, which a dedicated deployment is paid for."""

    start_ms: int
    end_ms: int

    @property
    def seconds(self) -> float:
        """Its length."""
        return max(0, self.end_ms - self.start_ms) / 1000

    def overlap_s(self, start_ms: int, end_ms: int) -> float:
        """Seconds of [start_ms, end_ms) inside the period."""
        return max(0, min(end_ms, self.end_ms) - max(start_ms, self.start_ms)) / 1000


def report_period(query: ReportQuery, activations: Sequence[UsageRecord]) -> Period:
    """`since`..`upto` where given, else the first start and the last end of the activations."""
    start = query.since_ms if query.since_ms is not None else \
        min((r.start_ms for r in activations), default=0)
    end = query.upto_ms if query.upto_ms is not None else \
        max((r.end_ms for r in activations), default=start)
    return Period(start, max(start, end))


def totals(rows: Iterable[UsageRecord]) -> dict[str, Any]:
    """Sums of a set of usage rows."""
    rows = list(rows)
    cost = {part: sum(getattr(r, f"cost_{part}") for r in rows)
            for part in ("accelerator", "memory", "prompt", "completion", "total")}
    return {"activations": sum(r.kind == ACTIVATION for r in rows),
            "promptTokens": sum(r.prompt_tokens for r in rows),
            "completionTokens": sum(r.completion_tokens for r in rows),
            "acceleratorSeconds": sum(r.accelerator_s for r in rows),
            "gbSeconds": sum(r.gb_s for r in rows), "cost": cost}


class Dedicated:
    """What the same requests cost when each function holds its own backbone copy.

    Each function seen in the report gets one accelerator and a container of its memory
    limit from its creation (or first use) in the period to the period's end, busy or not;
    token fees are the same as serverless.
    """

    def __init__(self, activations: Sequence[UsageRecord], period: Period,
                 prices: PriceSheet, created: Mapping[Function, int] | None = None) -> None:
        self.period = period
        self.prices = prices
        self.memory_mb: dict[Function, int] = {}
        self.held_from: dict[Function, int] = {}  # when its dedicated deployment starts
        for row in activations:  # oldest first
            key = (row.namespace, row.action)
            self.memory_mb[key] = max(self.memory_mb.get(key, 0), row.memory_mb)
            if key not in self.held_from:
                first = min(row.start_ms, (created or {}).get(key, row.start_ms))
                self.held_from[key] = max(period.start_ms, first)

    def rate(self, function: Function) -> float:
        """USD per second of holding a function's accelerator and container."""
        return (self.prices.accelerator_second
                + self.memory_mb[function] / GB_MB * self.prices.gb_second)

    def held_s(self, function: Function, start_ms: int, end_ms: int) -> float:
        """Seconds of [start_ms, end_ms) in the period that the function is held."""
        return self.period.overlap_s(max(start_ms, self.held_from[function]), end_ms)

    def cost(self, rows: Sequence[UsageRecord], functions: Iterable[Function],
             start_ms: int | None = None, end_ms: int | None = None) -> float:
        """Holding `functions` from their creation within [start_ms, end_ms) (the period by
        default), plus the token fees of `rows`."""
        start = self.period.start_ms if start_ms is None else start_ms
        end = self.period.end_ms if end_ms is None else end_ms
        tokens = sum(r.cost_prompt + r.cost_completion for r in rows)
        return sum(self.rate(f) * self.held_s(f, start, end) for f in functions) + tokens

    def whole_period_cost(self, rows: Sequence[UsageRecord]) -> float:
        """Every function held for the whole period, plus the token fees of `rows`."""
        tokens = sum(r.cost_prompt + r.cost_completion for r in rows)
        return sum(self.rate(f) for f in self.memory_mb) * self.period.seconds + tokens

    def assumptions(self) -> list[str]:
        """The comparison's assumptions, as printed beside the totals."""
        p = self.prices
        memory = ", ".join(f"{ns}/{action}: {mb} MB from {_iso(self.held_from[(ns, action)])}"
                           for (ns, action), mb in sorted(self.memory_mb.items(), key=str))
        return [
            (f"Dedicated deployment: each of the {len(self.memory_mb)} functions holds its own "
             f"copy of the backbone on its own accelerator ({p.accelerator_kind}) from its "
             f"creation (or its first use, if earlier or its creation is unknown) or the "
             f"period's start, whichever is later, to the period's end "
             f"({_iso(self.period.start_ms)} to {_iso(self.period.end_ms)}, "
             f"{self.period.seconds:.3f} s), busy or idle."),
            (f"Each function's container holds its memory limit while it is held "
             f"({memory or 'no functions'})."),
            ("One dedicated replica per function serves all of its requests: no scale-out, "
             "no cold starts, no sharing of the backbone or of accelerators."),
            (f"Same price sheet: {p.accelerator_hour} USD per accelerator-hour, "
             f"{p.gb_second} USD per GB-second, {p.prompt_mtok}/{p.completion_mtok} USD per "
             f"million prompt/completion tokens (token fees equal on both)."),
            ("Serverless cost: the billed activations only; platform overhead (idle and "
             "initializing containers) is shown apart and is in neither figure."),
        ]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _bucket_start(ms: int, size_ms: int) -> int:
    return ms - ms % size_ms


def _group_key(query: ReportQuery) -> Callable[[UsageRecord], str]:
    if query.group_by == "action":
        return lambda r: f"{r.namespace}/{r.action}" if query.namespace is None \
            else str(r.action)
    if query.group_by == "namespace":
        return lambda r: r.namespace
    size = DAY_MS if query.group_by == "day" else HOUR_MS
    fmt = "%Y-%m-%d" if query.group_by == "day" else "%Y-%m-%dT%H:00Z"
    return lambda r: datetime.fromtimestamp(_bucket_start(r.start_ms, size) / 1000,
                                            UTC).strftime(fmt)


def _groups(query: ReportQuery, activations: Sequence[UsageRecord],
            dedicated: Dedicated) -> list[dict[str, Any]]:
    key_of = _group_key(query)
    grouped: dict[str, list[UsageRecord]] = {}
    for row in activations:
        grouped.setdefault(key_of(row), []).append(row)
    everyone = list(dedicated.memory_mb)
    groups = []
    for key, rows in sorted(grouped.items()):
        group = {"key": key, **totals(rows)}
        if query.group_by in ("action", "namespace"):
            functions = sorted({(r.namespace, r.action) for r in rows}, key=str)
            group["dedicatedCost"] = dedicated.cost(rows, functions)
        else:  # a time bucket: every function held then, through the bucket's part of it
            size = DAY_MS if query.group_by == "day" else HOUR_MS
            start = _bucket_start(rows[0].start_ms, size)
            group["dedicatedCost"] = dedicated.cost(rows, everyone, start, start + size)
        groups.append(group)
    return groups


def _line(row: UsageRecord) -> dict[str, Any]:
    return {"activationId": row.activation_id, "namespace": row.namespace,
            "action": row.action, "start": row.start_ms, "end": row.end_ms,
            "startKind": row.start_kind, "statusCode": row.status_code,
            "promptTokens": row.prompt_tokens, "completionTokens": row.completion_tokens,
            "acceleratorSeconds": row.accelerator_s, "gbSeconds": row.gb_s,
            "cost": {"accelerator": row.cost_accelerator, "memory": row.cost_memory,
                     "prompt": row.cost_prompt, "completion": row.cost_completion,
                     "total": row.cost_total}}


def _overhead(rows: Sequence[UsageRecord]) -> dict[str, Any]:
    kinds: dict[str, list[UsageRecord]] = {}
    for row in rows:
        kinds.setdefault(row.kind, []).append(row)
    return {"billed": False,
            "note": "Idle (warm, pre-loaded, pre-warmed) and initializing containers: "
                    "platform cost, not billed to any function.",
            "byKind": {kind: {"seconds": sum(r.gb_s / (r.memory_mb / GB_MB)
                                             for r in group if r.memory_mb),
                              "gbSeconds": sum(r.gb_s for r in group),
                              "cost": sum(r.cost_total for r in group)}
                       for kind, group in sorted(kinds.items())},
            "cost": sum(r.cost_total for r in rows)}


def build_report(query: ReportQuery, rows: Sequence[UsageRecord], prices: PriceSheet,
                 created: Mapping[Function, int] | None = None) -> dict[str, Any]:
    """The report as JSON: totals with the dedicated comparison, groups, lines, overhead.

    `created`: when each function was created (`load_created`); without it, each is
    counted from its first use in the period."""
    activations = [r for r in rows if r.kind == ACTIVATION]
    period = report_period(query, activations)
    dedicated = Dedicated(activations, period, prices, created)
    total = totals(activations)
    dedicated_cost = dedicated.cost(activations, list(dedicated.memory_mb))
    serverless = total["cost"]["total"]
    return {
        "namespace": query.namespace if query.namespace is not None else "*",
        "since": query.since_ms, "upto": query.upto_ms, "groupBy": query.group_by,
        "period": {"start": period.start_ms, "end": period.end_ms, "seconds": period.seconds},
        "currency": "USD", "prices": prices.as_json(),
        "totals": {**total, "dedicatedCost": dedicated_cost,
                   "savingsPercent": round(100 * (1 - serverless / dedicated_cost), 2)
                   if dedicated_cost > 0 else None},
        "dedicated": {"cost": dedicated_cost, "serverlessCost": serverless,
                      "wholePeriodCost": dedicated.whole_period_cost(activations),
                      "timesServerless": round(dedicated_cost / serverless, 1)
                      if serverless > 0 else None,
                      "functions": len(dedicated.memory_mb),
                      "heldFrom": {f"{ns}/{action}": start for (ns, action), start
                                   in sorted(dedicated.held_from.items(), key=str)},
                      "assumptions": dedicated.assumptions()},
        "groups": _groups(query, activations, dedicated),
        "activations": [_line(r) for r in activations],
        "overhead": _overhead([r for r in rows if r.kind != ACTIVATION]),
    }


def report_csv(report: dict[str, Any]) -> str:
    """The report as CSV: one line per activation, per group, the total, the overhead, and
    the dedicated comparison's assumptions."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in report["activations"]:
        writer.writerow({"line": "activation", "activations": 1, **_flat(line)})
    for group in report["groups"]:
        writer.writerow({"line": report["groupBy"], **_flat(group)})
    writer.writerow({"line": "total", "key": report["namespace"], **_flat(report["totals"])})
    for kind, part in report["overhead"]["byKind"].items():
        writer.writerow({"line": "overhead", "key": kind, "gbSeconds": part["gbSeconds"],
                         "costTotal": part["cost"]})
    for text in report["dedicated"]["assumptions"]:
        writer.writerow({"line": "assumption", "key": text})
    return buffer.getvalue()


def _flat(values: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in values.items() if k in CSV_COLUMNS}
    for part, value in values.get("cost", {}).items():
        flat[f"cost{part.capitalize()}"] = value
    return flat
