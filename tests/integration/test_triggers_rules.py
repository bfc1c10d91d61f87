"""Triggers, rules and alarms as an OpenWhisk user drives them, on SQLite and PostgreSQL:
CRUD and its refusals, firing every active rule's lora action with the payload, disabling,
and an alarm fired once per tick by two controllers sharing one registry."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lorafaas.settings import replace
from tests.conftest import PlatformClient, PlatformTestServer
from tests.integration.test_api_resources import body, json_of
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.docker
NS = "/api/v1/namespaces/_"
PROMPT = {"prompt": "Once upon a time", "max_tokens": 3}


async def put(platform: PlatformClient, path: str, payload: Any, status: int = 200,
              **params: str) -> Any:
    """PUT a JSON body; the decoded answer after checking its status."""
    return await json_of(await platform.request("PUT", f"{NS}/{path}", json=payload,
                                                params=params), status)


async def record(platform: PlatformClient, activation_id: str, wait_s: float = 600) -> Any:
    """An activation record, waiting for it to be stored."""
    for _ in range(int(wait_s * 2)):
        response = await platform.request("GET", f"{NS}/activations/{activation_id}")
        if response.status == 200:
            return await response.json()
        await asyncio.sleep(0.5)
    raise AssertionError(f"no record of {activation_id}")


async def check_crud_and_refusals(platform: PlatformClient) -> None:
    await put(platform, "triggers/t", {"parameters": [{"key": "temperature", "value": 0}]})
    conflict = await put(platform, "triggers/t", {}, 409)
    assert "already exists" in conflict["error"]
    updated = await put(platform, "triggers/t", {"annotations": [{"key": "a", "value": 1}]},
                        overwrite="true")
    assert updated["version"] == "0.0.2" and updated["parameters"][0]["key"] == "temperature"
    assert (await put(platform, "triggers/p", {}, 409))["error"].startswith("Resource by this")
    await put(platform, "triggers/bad", {"parameters": "x"}, 400)
    await put(platform, "triggers/bad", {"annotations": [{"key": "feed", "value": "%%"}]}, 400)
    missing = await put(platform, "rules/r", {"trigger": "/_/nope", "action": "p"}, 400)
    assert missing["error"] == "trigger /guest/nope does not exist"
    missing = await put(platform, "rules/r", {"trigger": "t", "action": "/guest/gone"}, 400)
    assert missing["error"] == "action /guest/gone does not exist"
    await put(platform, "rules/r", {"trigger": "t"}, 400)
    await json_of(await platform.request("GET", f"{NS}/rules/r"), 404)  # nothing half-written
    await json_of(await platform.request("GET", f"{NS}/triggers/bad"), 404)
    # No active rule: 204, and no record.
    assert (await platform.request("POST", f"{NS}/triggers/t", json={})).status == 204
    listed = await json_of(await platform.request("GET", f"{NS}/triggers"), 200)
    assert [t["name"] for t in listed] == ["t"]
    count = await json_of(await platform.request("GET", f"{NS}/triggers",
                                                 params={"count": "true"}), 200)
    assert count == {"triggers": 1}


async def check_firing(platform: PlatformClient) -> None:
    for name in ("r1", "r2"):
        rule = await put(platform, f"rules/{name}", {"trigger": "/_/t", "action": "p"})
        assert rule["status"] == "active"
        assert rule["trigger"] == {"path": "guest", "name": "t"}
        assert rule["action"] == {"path": "guest", "name": "p"}
    trigger = await json_of(await platform.request("GET", f"{NS}/triggers/t"), 200)
    assert trigger["rules"]["guest/r1"] == {"action": {"path": "guest", "name": "p"},
                                            "status": "active"}
    fired = await platform.request("POST", f"{NS}/triggers/t", json=PROMPT)
    activation_id = (await json_of(fired, 202))["activationId"]
    assert fired.headers["x-openwhisk-activation-id"] == activation_id
    trigger_record = await record(platform, activation_id)
    assert trigger_record["name"] == "t" and trigger_record["response"]["result"] == PROMPT
    lines = sorted((json.loads(line) for line in trigger_record["logs"]),
                   key=lambda line: line["rule"])
    assert [(line["rule"], line["action"], line["statusCode"], line["success"])
            for line in lines] == [("guest/r1", "guest/p", 0, True),
                                   ("guest/r2", "guest/p", 0, True)]
    # Each rule's action ran with the trigger's parameters merged with the payload.
    direct = await json_of(await platform.request(
        "POST", f"{NS}/actions/p", params={"blocking": "true", "result": "true"},
        json={**PROMPT, "temperature": 0}), 200)
    for line in lines:
        action_record = await record(platform, line["activationId"])
        assert action_record["name"] == "p"
        assert action_record["response"]["result"]["text"] == direct["text"]

    # OpenWhisk answers a status change with `complete(OK)`: the text "OK", not the rule.
    disabled = await platform.request("POST", f"{NS}/rules/r2", json={"status": "inactive"})
    assert (disabled.status, disabled.content_type, await disabled.text()) == (
        200, "text/plain", "OK")
    assert (await json_of(await platform.request("GET", f"{NS}/rules/r2"), 200)
            )["status"] == "inactive"
    unchanged = await platform.request("POST", f"{NS}/rules/r2", json={"status": "inactive"})
    assert (unchanged.status, await unchanged.text()) == (200, "OK")
    bad = await json_of(await platform.request("POST", f"{NS}/rules/r2",
                                               json={"status": "on"}), 400)
    assert "is not a recognized rule state" in bad["error"]
    again = await json_of(await platform.request("POST", f"{NS}/triggers/t", json=PROMPT), 202)
    lines = [json.loads(line) for line in (await record(platform, again["activationId"]))["logs"]]
    by_rule = {line["rule"]: line for line in lines}
    assert by_rule["guest/r1"]["success"] and "activationId" in by_rule["guest/r1"]
    assert by_rule["guest/r2"] == {
        "rule": "guest/r2", "action": "guest/p", "statusCode": 1, "success": False,
        "error": "Rule 'guest/r2' is inactive, action 'guest/p' was not activated."}


async def check_missing_action_and_deleted_trigger(platform: PlatformClient, code: bytes
                                                   ) -> None:
    await put(platform, "actions/q", body(code))
    await put(platform, "rules/rq", {"trigger": "t", "action": "q"})
    await json_of(await platform.request("DELETE", f"{NS}/actions/q"), 200)
    fired = await json_of(await platform.request("POST", f"{NS}/triggers/t", json=PROMPT), 202)
    lines = [json.loads(line) for line in (await record(platform, fired["activationId"]))["logs"]]
    failed = next(line for line in lines if line["rule"] == "guest/rq")
    assert failed["statusCode"] == 1 and failed["error"] == \
        "The requested resource does not exist."
    await json_of(await platform.request("DELETE", f"{NS}/rules/rq"), 200)

    await json_of(await platform.request("DELETE", f"{NS}/triggers/t"), 200)
    rule = await json_of(await platform.request("GET", f"{NS}/rules/r1"), 200)
    assert rule["status"] == "inactive"  # the rule stays, unlinked
    enable = await json_of(await platform.request("POST", f"{NS}/rules/r1",
                                                  json={"status": "active"}), 404)
    assert enable["error"] == "Only rules with existing triggers can be activated"
    await put(platform, "triggers/t", {})
    assert (await json_of(await platform.request("GET", f"{NS}/rules/r1"), 200)
            )["status"] == "inactive"
    enabled = await platform.request("POST", f"{NS}/rules/r1", json={"status": "active"})
    assert (enabled.status, await enabled.text()) == (200, "OK")
    assert (await json_of(await platform.request("GET", f"{NS}/rules/r1"), 200)
            )["status"] == "active"
    assert await json_of(await platform.request("GET", f"{NS}/rules",
                                                params={"count": "true"}), 200) == {"rules": 2}


async def check_feed_action(platform: PlatformClient) -> None:
    feed = "/api/v1/namespaces/whisk.system/actions/alarms/alarm"

    async def invoke(status: int, **params: Any) -> Any:
        response = await platform.request("POST", feed, params={"blocking": "true"},
                                          json={"triggerName": "/_/ft", "authKey": "k",
                                                **params})
        return (await json_of(response, status))["response"]["result"]

    annotations = [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]
    await put(platform, "triggers/ft", {"annotations": annotations})  # as wsk creates it
    assert "feed" not in await json_of(await platform.request("GET", f"{NS}/triggers/ft"), 200)
    assert await invoke(200, lifecycleEvent="CREATE", cron="0 0 1 1 *") == \
        {"status": "success"}
    read = await invoke(200, lifecycleEvent="READ")
    assert read["config"]["cron"] == "0 0 1 1 *" and read["config"]["name"] == "ft"
    assert await invoke(502, lifecycleEvent="UPDATE") == \
        {"error": "no updatable parameters were specified"}
    await invoke(200, lifecycleEvent="UPDATE", cron="0 0 2 1 *")
    assert (await invoke(200, lifecycleEvent="READ"))["config"]["cron"] == "0 0 2 1 *"
    assert await invoke(502, lifecycleEvent="CREATE", cron="x") == \
        {"error": "cron pattern 'x' is not valid"}
    await invoke(200, lifecycleEvent="DELETE")
    assert "no alarm" in (await invoke(502, lifecycleEvent="READ"))["error"]
    assert await invoke(502, lifecycleEvent="RESTART") == {"error": "unsupported lifecycleEvent"}
    await json_of(await platform.request("POST", feed.rpartition("/")[0] + "/nope", json={}), 404)
    await json_of(await platform.request("DELETE", f"{NS}/triggers/ft"), 200)


async def check_cli(platform: PlatformClient, cli: Cli) -> None:
    host = str(platform.client.make_url("/")).rstrip("/")

    async def run(*argv: str) -> tuple[int, str, str]:
        return await cli("--apihost", host, "--auth", platform.credential, *argv)

    assert await run("trigger", "create", "c1", "-p", "temperature", "0") == \
        (0, "ok: created trigger c1\n", "")
    assert await run("rule", "create", "cr", "c1", "p") == (0, "ok: created rule cr\n", "")
    assert await run("rule", "disable", "cr") == (0, "ok: disabled rule cr\n", "")
    assert await run("trigger", "fire", "c1", "-p", "prompt", "hi") == \
        (0, "ok: triggered /_/c1, no rule is active\n", "")
    assert await run("rule", "enable", "cr") == (0, "ok: enabled rule cr\n", "")
    code, out, _ = await run("trigger", "fire", "c1", "-p", "prompt", "hi", "-p",
                             "max_tokens", "2")
    assert code == 0 and re.fullmatch(r"ok: triggered /_/c1 with id [0-9a-f]{32}\n", out)
    code, out, _ = await run("rule", "list")
    assert code == 0 and f"{'/guest/cr':<70} private active" in out.splitlines()
    code, out, _ = await run("trigger", "list")
    assert code == 0 and f"{'/guest/c1':<70} private" in out.splitlines()
    code, out, _ = await run("--json", "rule", "get", "cr")
    assert json.loads(out)["status"] == "active"
    assert await run("rule", "delete", "cr") == (0, "ok: deleted rule cr\n", "")
    code, out, err = await run("trigger", "create", "c2", "--feed",
                               "/whisk.system/alarms/alarm", "-p", "cron", "bad")
    assert (code, out) == (1, "") and err.startswith(
        "error: Unable to create trigger 'c2': cron pattern 'bad' is not valid"), err
    assert await run("trigger", "delete", "c1") == (0, "ok: deleted trigger c1\n", "")


async def check_alarm_with_two_controllers(platform: PlatformClient, second: PlatformClient
                                           ) -> None:
    refused = await put(platform, "triggers/tick", {
        "annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}],
        "parameters": [{"key": "cron", "value": "not cron"}]}, 400)
    assert refused["error"] == "cron pattern 'not cron' is not valid"
    await json_of(await platform.request("GET", f"{NS}/triggers/tick"), 404)
    stop = (datetime.now(UTC) + timedelta(seconds=8)).isoformat()
    created = await put(platform, "triggers/tick", {
        "annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}],
        "parameters": [{"key": "cron", "value": "* * * * * *"},
                       {"key": "trigger_payload", "value": PROMPT},
                       {"key": "stopDate", "value": stop}]})
    assert created["parameters"] == []  # the feed's parameters are the feed's
    await put(platform, "rules/rtick", {"trigger": "tick", "action": "p"})
    read = await json_of(await second.request("GET", f"{NS}/triggers/tick"), 200)
    assert read["feed"]["config"]["cron"] == "* * * * * *"
    await asyncio.sleep(12)  # past the stop date: every tick is fired by now
    records = await json_of(await platform.request(
        "GET", f"{NS}/activations", params={"name": "tick", "docs": "true", "limit": "0"}), 200)
    ticks = await tick_rows(platform)
    assert len(ticks) >= 3, ticks
    assert len(records) == len(ticks), (records, ticks)  # one firing per tick
    activations = {json.loads(r["logs"][0])["activationId"] for r in records}
    assert len(activations) == len(records)
    first = await record(platform, next(iter(activations)))
    assert first["name"] == "p" and "text" in first["response"]["result"]
    await json_of(await platform.request("DELETE", f"{NS}/triggers/tick"), 200)


async def tick_rows(platform: PlatformClient) -> list[tuple[int, str]]:
    """The claimed ticks in the registry: (tick, controller)."""
    from sqlalchemy import select

    from lorafaas.registry.db import make_engine, make_sessions
    from lorafaas.registry.models import AlarmTick

    engine = make_engine(platform.settings.database_url)
    try:
        async with make_sessions(engine)() as session:
            rows = (await session.execute(select(AlarmTick.tick_ms, AlarmTick.fired_by))).all()
    finally:
        await engine.dispose()
    return [(tick, fired_by) for tick, fired_by in rows]


async def test_triggers_rules_and_alarms(platform, demo_models, make_zip, aiohttp_client,  # type: ignore[no-untyped-def]
                                         capsys, monkeypatch, tmp_path) -> None:
    code = make_zip(demo_models.adapters["pirate"])
    await put(platform, "actions/p", body(code))
    await check_crud_and_refusals(platform)
    await check_firing(platform)
    await check_missing_action_and_deleted_trigger(platform, code)
    await check_feed_action(platform)
    monkeypatch.setenv("LORAFAAS_HOME", str(tmp_path / "cli-home"))
    await check_cli(platform, Cli(capsys))
    run_dir = Path(tempfile.mkdtemp(prefix="lf-", dir="/tmp"))
    shm_dir = Path("/dev/shm") / f"lorafaas-test-{uuid.uuid4().hex[:8]}"
    try:
        from lorafaas.controller.app import create_app

        settings = replace(platform.settings, run_dir=run_dir, shm_dir=shm_dir,
                           invoker_id=f"test{uuid.uuid4().hex[:8]}")
        client = await aiohttp_client(PlatformTestServer(create_app(settings)))
        second = PlatformClient(client, platform.credential, settings)
        await check_alarm_with_two_controllers(platform, second)
        await client.close()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(shm_dir, ignore_errors=True)
