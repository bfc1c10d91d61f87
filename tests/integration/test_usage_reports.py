"""Usage reports on SQLite and PostgreSQL, and metering of real invocations.

The registry half stores usage rows and reads reports back (groupings, since/upto, CSV,
the dedicated comparison). The platform half invokes real functions in Docker and checks
that the billed CPU-seconds add up to the CPU time the Docker engine counted for their
containers over the same invocations (its stats API, which reads the same cgroups on its
own), within a margin for the little the runtimes do between requests.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.billing.ledger import ACTIVATION, usage_row
from lorafaas.billing.metering import Usage, cost_of
from lorafaas.billing.prices import PriceSheet
from lorafaas.billing.reports import ReportQuery, build_report, load_rows, report_csv
from lorafaas.controller.app import local_invoker_key
from lorafaas.controller.appkeys import sessions_key
from lorafaas.errors import BadRequest
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.namespaces import create_namespace
from lorafaas.wire.runtime_protocol import RUNTIME_SOCKET_NAME
from tests.integration.test_end_to_end import annotation, create_action, invoke

PRICES = PriceSheet("cpu", accelerator_hour=3.6, gb_second=0.001, prompt_mtok=1.0,
                    completion_mtok=2.0)
HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on a migrated registry (SQLite, then PostgreSQL)."""
    engine = make_engine(database_url)
    yield make_sessions(engine)
    await engine.dispose()


def activation(namespace: str, action: str, start_ms: int, seconds: float,
               activation_id: str, memory_mb: int = 1024) -> Any:
    """An activation's usage row that computed for `seconds` with 10 + 20 tokens."""
    usage = Usage(accelerator_s=seconds, gb_s=memory_mb / 1024 * seconds, prompt_tokens=10,
                  completion_tokens=20)
    return usage_row(ACTIVATION, namespace, action, start_ms, start_ms + int(seconds * 1000),
                     memory_mb, usage, cost_of(usage, PRICES), PRICES,
                     activation_id=activation_id, start_kind="warm", status_code=0)


def overhead(kind: str, namespace: str, start_ms: int, gb_s: float) -> Any:
    """An overhead row."""
    usage = Usage(0.0, gb_s, 0, 0)
    return usage_row(kind, namespace, "a", start_ms, start_ms + 1000, 1024, usage,
                     cost_of(usage, PRICES), PRICES)


@pytest.fixture
async def stored(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Two namespaces' activations over two hours and two days, and some overhead."""
    async with sessions() as session, session.begin():
        session.add_all([
            activation("alice", "a", T0, 1.0, "a1"),
            activation("alice", "a", T0 + 10, 2.0, "a2"),
            activation("alice", "b", T0 + HOUR + 5, 4.0, "a3", memory_mb=2048),
            activation("alice", "b", T0 + 24 * HOUR, 1.0, "a4", memory_mb=2048),
            activation("bob", "c", T0 + 30, 8.0, "b1"),
            overhead("idle_warm", "alice", T0 + 3000, 5.0),
            overhead("init", "alice", T0, 2.0),
        ])


async def report(sessions: async_sessionmaker[AsyncSession], namespace: str | None,
                 group_by: str = "action", since: int | None = None,
                 upto: int | None = None) -> dict[str, Any]:
    """Build a report from the registry."""
    query = ReportQuery(namespace, since, upto, group_by)
    async with sessions() as session:
        return build_report(query, await load_rows(session, query), PRICES)


@pytest.mark.usefixtures("stored")
async def test_totals_groups_and_lines_of_a_namespace(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    body = await report(sessions, "alice")
    totals = body["totals"]
    assert totals["activations"] == 4
    assert totals["acceleratorSeconds"] == pytest.approx(8.0)
    assert totals["gbSeconds"] == pytest.approx(1 + 2 + 8 + 2)
    assert totals["promptTokens"] == 40 and totals["completionTokens"] == 80
    # 8 s × 0.001 USD/s + 13 GB-s × 0.001 + 40 × 1e-6 + 80 × 2e-6
    assert totals["cost"]["total"] == pytest.approx(0.008 + 0.013 + 0.00004 + 0.00016)
    assert [g["key"] for g in body["groups"]] == ["a", "b"]
    assert [g["activations"] for g in body["groups"]] == [2, 2]
    assert sorted(line["activationId"] for line in body["activations"]) == ["a1", "a2", "a3",
                                                                            "a4"]
    assert math.fsum(line["cost"]["total"] for line in body["activations"]) == \
        pytest.approx(totals["cost"]["total"])
    # Overhead is apart and not in the totals.
    assert body["overhead"]["billed"] is False
    assert set(body["overhead"]["byKind"]) == {"idle_warm", "init"}
    assert body["overhead"]["cost"] == pytest.approx(0.007)


@pytest.mark.usefixtures("stored")
async def test_the_dedicated_comparison_holds_each_function_from_its_first_use(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    body = await report(sessions, "alice")
    end = T0 + 24 * HOUR + 1000
    period_s = (end - T0) / 1000
    assert body["period"]["seconds"] == pytest.approx(period_s)
    # a: 1 GB from T0, b: 2 GB from its first use an hour later; accelerator 0.001 USD/s
    # each; memory 0.001 USD/GB-s.
    a_s, b_s = period_s, (end - (T0 + HOUR + 5)) / 1000
    tokens = 40 * 1e-6 + 80 * 2e-6
    assert body["dedicated"]["cost"] == pytest.approx(a_s * 0.002 + b_s * 0.003 + tokens)
    assert body["dedicated"]["heldFrom"] == {"alice/a": T0, "alice/b": T0 + HOUR + 5}
    # The other figure: every function held for the whole period.
    assert body["dedicated"]["wholePeriodCost"] == pytest.approx(period_s * 0.005 + tokens)
    assert body["totals"]["dedicatedCost"] == body["dedicated"]["cost"]
    saving = 1 - body["totals"]["cost"]["total"] / body["dedicated"]["cost"]
    assert body["totals"]["savingsPercent"] == pytest.approx(100 * saving, abs=0.01)
    assert body["dedicated"]["functions"] == 2
    assumptions = " ".join(body["dedicated"]["assumptions"])
    assert "each of the 2 functions holds its own copy of the backbone" in assumptions
    assert "alice/b: 2048 MB from 2026-01-01T01:00:00.005+00:00" in assumptions
    by_action = {g["key"]: g["dedicatedCost"] for g in body["groups"]}
    assert by_action["b"] == pytest.approx(b_s * 0.003 + 2 * (10e-6 + 40e-6))


@pytest.mark.usefixtures("stored")
async def test_a_function_created_before_its_first_use_is_held_from_its_creation(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    query = ReportQuery("alice", T0 - HOUR, None, "action")
    async with sessions() as session:
        rows = await load_rows(session, query)
    # b was created half an hour before the period began, a ten minutes into it.
    created = {("alice", "a"): T0 - HOUR + 600_000, ("alice", "b"): T0 - 90 * 60_000}
    body = build_report(query, rows, PRICES, created)
    assert body["dedicated"]["heldFrom"] == {"alice/a": T0 - HOUR + 600_000,
                                            "alice/b": T0 - HOUR}
    end = T0 + 24 * HOUR + 1000
    held = (end - (T0 - HOUR + 600_000)) / 1000 * 0.002 + (end - (T0 - HOUR)) / 1000 * 0.003
    assert body["dedicated"]["cost"] == pytest.approx(held + 40 * 1e-6 + 80 * 2e-6)
    by_action = {g["key"]: g["dedicatedCost"] for g in body["groups"]}
    assert by_action["b"] == pytest.approx((end - (T0 - HOUR)) / 1000 * 0.003
                                           + 2 * (10e-6 + 40e-6))


@pytest.mark.usefixtures("stored")
async def test_groups_by_hour_and_day_add_up_to_the_totals(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    hourly = await report(sessions, "alice", "hour")
    assert [g["key"] for g in hourly["groups"]] == ["2026-01-01T00:00Z", "2026-01-01T01:00Z",
                                                    "2026-01-02T00:00Z"]
    daily = await report(sessions, "alice", "day")
    assert [(g["key"], g["activations"]) for g in daily["groups"]] == [("2026-01-01", 3),
                                                                       ("2026-01-02", 1)]
    for body in (hourly, daily):
        assert math.fsum(g["cost"]["total"] for g in body["groups"]) == \
            pytest.approx(body["totals"]["cost"]["total"])
    # The dedicated deployment is paid through every bucket's part of the period.
    assert math.fsum(g["dedicatedCost"] for g in daily["groups"]) == \
        pytest.approx(daily["dedicated"]["cost"])


@pytest.mark.usefixtures("stored")
async def test_since_and_upto_bound_the_start(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    body = await report(sessions, "alice", since=T0 + 10, upto=T0 + HOUR + 5)
    assert sorted(line["activationId"] for line in body["activations"]) == ["a2", "a3"]
    assert body["period"] == {"start": T0 + 10, "end": T0 + HOUR + 5,
                              "seconds": pytest.approx(3600 - 0.005)}
    with pytest.raises(BadRequest):
        ReportQuery("alice", T0 + 10, T0, "action")
    with pytest.raises(BadRequest):
        ReportQuery("alice", None, None, "week")


@pytest.mark.usefixtures("stored")
async def test_the_admin_view_spans_every_namespace(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    body = await report(sessions, None, "namespace")
    assert body["namespace"] == "*"
    assert [(g["key"], g["activations"]) for g in body["groups"]] == [("alice", 4), ("bob", 1)]
    assert body["totals"]["acceleratorSeconds"] == pytest.approx(16.0)
    by_action = await report(sessions, None, "action")
    assert [g["key"] for g in by_action["groups"]] == ["alice/a", "alice/b", "bob/c"]


@pytest.mark.usefixtures("stored")
async def test_csv_has_a_line_per_activation_group_total_and_assumption(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    body = await report(sessions, "alice")
    lines = list(csv.DictReader(io.StringIO(report_csv(body))))
    kinds = [line["line"] for line in lines]
    assert kinds.count("activation") == 4 and kinds.count("action") == 2
    assert kinds.count("total") == 1 and kinds.count("overhead") == 2
    assert kinds.count("assumption") == len(body["dedicated"]["assumptions"])
    total = next(line for line in lines if line["line"] == "total")
    assert float(total["costTotal"]) == pytest.approx(body["totals"]["cost"]["total"])
    assert float(total["dedicatedCost"]) == pytest.approx(body["dedicated"]["cost"])
    a3 = next(line for line in lines if line["activationId"] == "a3")
    assert (a3["action"], a3["gbSeconds"], a3["startKind"]) == ("b", "8.0", "warm")


# Real invocations ------------------------------------------------------------------------

PROMPTS = ["Tell me about the weather today.", "Write a short poem about the sea.",
           "What is a LoRA adapter?", "Name three rivers."]
MAX_TOKENS = 12


async def runtime_health(socket_path: Any) -> dict[str, Any]:
    """A container runtime's /health, straight over its socket."""
    connector = aiohttp.UnixConnector(str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get("http://runtime/health") as response:
        return dict(await response.json())


def socket_of(container: Any) -> Any:
    """The host path of a pooled container's runtime socket."""
    folders = getattr(container, "folders", None)
    if folders is not None:
        return folders.socket
    return container.socket_dir / RUNTIME_SOCKET_NAME


def engine_cpu_s(docker_client: Any, container_id: str) -> float:
    """CPU seconds of a container so far, as the Docker engine reports them."""
    stats = docker_client.api.stats(container_id, stream=False, one_shot=True)
    return int(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


@pytest.mark.docker
async def test_real_invocations_are_metered_reported_and_conserved(  # type: ignore[no-untyped-def]
        platform, demo_models, make_zip, docker_client) -> None:
    records = []
    test_started_ms = int(time.time() * 1000)
    for name in ("pirate", "shout"):
        await create_action(platform, name, demo_models.adapters[name], make_zip)
    for i, prompt in enumerate(PROMPTS):
        name = ("pirate", "shout")[i % 2]
        status, record, _ = await invoke(platform, name, prompt=prompt, max_tokens=MAX_TOKENS,
                                         temperature=0, ignore_eos=True)
        assert status == 200, record
        records.append(record)

    # The activation record carries its cost.
    for record in records:
        cost = annotation(record, "cost")
        assert cost["currency"] == "USD" and cost["acceleratorKind"] == "cpu"
        assert cost["acceleratorSeconds"] > 0 and cost["gbSeconds"] > 0
        # The host read the container's cgroup: two CPU-seconds make an accelerator-second.
        assert cost["measure"] == "cgroup-cpu"
        assert cost["acceleratorSeconds"] == pytest.approx(cost["cpuSeconds"] / 2, abs=1e-6)
        assert cost["total"] == pytest.approx(cost["accelerator"] + cost["memory"], rel=1e-6)

    response = await platform.request("GET", "/api/v1/namespaces/_/usage")
    body = await response.json()
    assert response.status == 200, body
    assert body["totals"]["activations"] == len(records)
    lines = {line["activationId"]: line for line in body["activations"]}
    assert set(lines) == {r["activationId"] for r in records}
    for record in records:
        line, cost = lines[record["activationId"]], annotation(record, "cost")
        assert line["cost"]["total"] == pytest.approx(cost["total"], rel=1e-6, abs=1e-12)
        assert line["completionTokens"] == MAX_TOKENS
        assert line["startKind"] == annotation(record, "startKind")
    assert [(g["key"], g["activations"]) for g in body["groups"]] == [("pirate", 2),
                                                                      ("shout", 2)]
    assert body["totals"]["dedicatedCost"] > body["totals"]["cost"]["total"] > 0
    # The dedicated deployment of each function starts at its creation, minutes ago.
    first = min(r["start"] for r in records)
    assert set(body["dedicated"]["heldFrom"]) == {"guest/pirate", "guest/shout"}
    assert all(test_started_ms <= held <= first
               for held in body["dedicated"]["heldFrom"].values())
    assert body["dedicated"]["wholePeriodCost"] >= body["dedicated"]["cost"]
    # The two cold starts are overhead, not billed.
    assert body["overhead"]["byKind"]["init"]["gbSeconds"] > 0

    healths = [await runtime_health(socket_of(c)) for c in platform.app[local_invoker_key].pool.containers()]
    assert sum(h.get("generations", 0) for h in healths) == len(records)
    await _check_views(platform, body, records)
    await _check_conservation(platform, docker_client)


async def _check_conservation(platform, docker_client: Any) -> None:  # type: ignore[no-untyped-def]
    """Billed CPU-seconds of warm invocations = the CPU time their containers used over
    them, as the engine counts it: all of it but what the runtimes spend between requests."""
    containers = [c.info.id for c in platform.app[local_invoker_key].pool.containers()]
    before = {cid: engine_cpu_s(docker_client, cid) for cid in containers}
    billed = []
    for i, prompt in enumerate(PROMPTS):
        status, record, _ = await invoke(platform, ("pirate", "shout")[i % 2], prompt=prompt,
                                         max_tokens=MAX_TOKENS, temperature=0, ignore_eos=True)
        assert status == 200 and annotation(record, "startKind") == "warm", record
        billed.append(annotation(record, "cost")["cpuSeconds"])
    used = math.fsum(engine_cpu_s(docker_client, cid) - before[cid] for cid in containers)
    print(f"conservation: billed {math.fsum(billed):.4f} CPU-s, the engine counted "
          f"{used:.4f} CPU-s, difference {100 * (math.fsum(billed) - used) / used:+.2f}%")
    assert 0.9 * used <= math.fsum(billed) <= used * 1.001


async def _check_views(platform, body: dict[str, Any], records: list[dict[str, Any]]  # type: ignore[no-untyped-def]
                       ) -> None:
    total = body["totals"]["cost"]["total"]
    for group_by in ("hour", "day"):
        response = await platform.request("GET", "/api/v1/namespaces/_/usage",
                                          params={"groupBy": group_by})
        grouped = await response.json()
        assert math.fsum(g["cost"]["total"] for g in grouped["groups"]) == pytest.approx(total)

    since = records[2]["start"]
    response = await platform.request("GET", "/api/v1/namespaces/_/usage",
                                      params={"since": str(since), "upto": str(since + 10**9)})
    later = await response.json()
    assert {line["activationId"] for line in later["activations"]} == \
        {r["activationId"] for r in records if r["start"] >= since}

    response = await platform.request("GET", "/api/v1/namespaces/_/usage",
                                      params={"format": "csv"})
    assert response.status == 200 and response.content_type == "text/csv"
    lines = list(csv.DictReader(io.StringIO(await response.text())))
    assert sum(line["line"] == "activation" for line in lines) == len(records)

    response = await platform.request("GET", "/api/v1/namespaces/_/usage",
                                      params={"groupBy": "week"})
    assert response.status == 400

    # The guest is an admin namespace by default; another namespace is not.
    response = await platform.request("GET", "/api/v1/admin/usage")
    admin = await response.json()
    assert response.status == 200, admin
    assert [g["key"] for g in admin["groups"]] == [platform.settings.guest_namespace]
    async with platform.app[sessions_key]() as session, session.begin():
        other = await create_namespace(session, "other")
    headers = {"Authorization": aiohttp.encode_basic_auth(*other.split(":", 1))}
    response = await platform.request("GET", "/api/v1/admin/usage", headers=headers)
    assert response.status == 403
    response = await platform.request("GET", "/api/v1/namespaces/_/usage", headers=headers)
    assert (await response.json())["totals"]["activations"] == 0
