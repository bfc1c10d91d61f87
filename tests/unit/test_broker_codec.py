"""The broker's pure parts: the seam's types survive their JSON, heartbeats age out, and
merged metrics name their invoker (placement: test_broker_placing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorafaas.broker.codec import (
    decode_request,
    decode_result,
    decode_snapshot,
    dumps,
    encode_request,
    encode_result,
    encode_snapshot,
    loads,
)
from lorafaas.broker.heartbeats import Heartbeat, LiveInvokers
from lorafaas.broker.metrics_text import merge_metrics
from lorafaas.broker.topology import HEARTBEAT_TTL_S
from lorafaas.invoking.activations import (
    ActivationRequest,
    ActivationResult,
    ArtifactLoad,
    FunctionRef,
)
from lorafaas.invoking.client import Eviction, InvokerSnapshot, MetricsText
from lorafaas.names import QualifiedName
from lorafaas.settings import Role, SettingsError, load_settings, replace


def function(name: str = "f", package: str | None = "pkg") -> FunctionRef:
    return FunctionRef(key=f"ns/{name}@0.0.1:d", name=QualifiedName("ns", package, name),
                       adapter_dir=Path("/store/d"), memory_mb=512, adapter_digest="d",
                       backbone="demo", adapter_rank=8, has_handler=True)


def test_a_request_survives_its_json() -> None:
    request = ActivationRequest("a1", "ns", "f", "0.0.1", "ns", function(),
                                {"prompt": "hi", "n": [1, 2]}, {"timeout": 1000}, 12.5,
                                bound=QualifiedName("other", "pkg", "f"), cause="s1",
                                durable=True)
    assert decode_request(loads(dumps(encode_request(request)))) == request


def test_a_result_survives_its_json() -> None:
    result = ActivationResult(1, 2, 0, {"status": "success"}, ["log"],
                              [{"key": "startKind", "value": "cold"}], {"ttft": 3.5},
                              (ArtifactLoad("adapter", "gpu", 4.0, 1024),), False)
    assert decode_result(loads(dumps(encode_result(result)))) == result


def test_a_snapshot_survives_its_json() -> None:
    snapshot = InvokerSnapshot([{"container": "c", "pid": 3}], 4096,
                               [Eviction(1.0, "c", None, "prewarmed", "demo", 256, 2.0, 0,
                                         "idle")])
    assert decode_snapshot(loads(dumps(encode_snapshot(snapshot)))) == snapshot


def test_a_message_body_is_one_object() -> None:
    assert loads(b"") == {}
    with pytest.raises(TypeError):
        loads(json.dumps([1]).encode())


def beat(invoker_id: str, at: float = 100.0) -> Heartbeat:
    return Heartbeat(invoker_id, at, 0, 8, InvokerSnapshot([], None, []))


def test_an_invoker_unheard_past_the_ttl_is_out() -> None:
    now = [100.0]
    live = LiveInvokers(clock=lambda: now[0])
    live.seen(beat("a", 100.0))
    now[0] = 101.0
    live.seen(beat("b", 0.0))  # its sender's clock far behind: when it came counts
    assert live.live_ids() == ["a", "b"]
    now[0] = 100.0 + HEARTBEAT_TTL_S + 0.1
    assert live.live_ids() == ["b"]
    live.gone("b")
    assert live.live_ids() == []


def test_a_heartbeat_sent_by_a_skewed_clock_is_live_when_it_comes() -> None:
    live = LiveInvokers(clock=lambda: 100.0)
    live.seen(beat("behind", 100.0 - 60))
    live.seen(beat("ahead", 100.0 + 60))
    assert live.live_ids() == ["ahead", "behind"]
    assert {h.at for h in live.live()} == {100.0}


def test_merged_metrics_label_each_sample_with_its_invoker() -> None:
    text = "# HELP q queued\n# TYPE q gauge\nq{function=\"f\"} 2\nup 1\n"
    merged = merge_metrics({"b": MetricsText(text, "text/plain"),
                            "a": MetricsText(text, "text/plain")})
    lines = merged.body.splitlines()
    assert lines.count("# TYPE q gauge") == 1
    assert 'q{invoker="a",function="f"} 2' in lines
    assert 'up{invoker="b"} 1' in lines


def test_the_multi_machine_roles_need_a_broker_and_postgresql(tmp_path: Path) -> None:
    settings = load_settings({"LORAFAAS_HOME": str(tmp_path)})
    settings.check_role(Role.ALL)  # the default needs neither
    for role in (Role.CONTROLLER, Role.INVOKER):
        with pytest.raises(SettingsError, match="LORAFAAS_BROKER_URL.*LORAFAAS_DATABASE_URL"):
            settings.check_role(role)
    with pytest.raises(SettingsError, match="is not PostgreSQL"):
        replace(settings, broker_url="nats://127.0.0.1:4222").check_role(Role.CONTROLLER)
    replace(settings, broker_url="nats://127.0.0.1:4222",
            database_url="postgresql+psycopg://u@h/db").check_role(Role.CONTROLLER)


def test_a_bad_invoker_id_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LORAFAAS_INVOKER_ID"):
        load_settings({"LORAFAAS_HOME": str(tmp_path), "LORAFAAS_INVOKER_ID": "a.b"})
