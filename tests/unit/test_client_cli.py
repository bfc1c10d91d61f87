"""The client's pieces that need no server: parameters, adapter zips, wsk's layouts, flags."""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lorafaas.client import commands, render
from lorafaas.client.commands import Context
from lorafaas.client.http import Reply, api_base_url
from lorafaas.client.output import CommandError
from lorafaas.client.parser import add_client_commands, add_global_options
from lorafaas.client.payload import adapter_zip, key_values, parse_value
from lorafaas.client.props import ClientConfig
from lorafaas.names import QualifiedName


@pytest.mark.parametrize("text,value", [
    ("8", 8), ("0.5", 0.5), ("true", True), ("null", None), ('"8"', "8"),
    ('{"a": [1, 2]}', {"a": [1, 2]}), ("Tell me about the weather.", "Tell me about the weather."),
    ("", ""), ("[1, 2", "[1, 2"),
])
def test_param_values_are_json_when_they_parse(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_params_overlay_the_param_file(tmp_path: Path) -> None:
    file = tmp_path / "params.json"
    file.write_text(json.dumps({"prompt": "from file", "max_tokens": 4, "seed": 1}))
    values = key_values([["max_tokens", "8"], ["prompt", "hi"]], file, "parameter")
    assert values == {"prompt": "hi", "max_tokens": 8, "seed": 1}


def test_a_param_file_must_hold_an_object(tmp_path: Path) -> None:
    file = tmp_path / "params.json"
    file.write_text("[1, 2]")
    with pytest.raises(CommandError, match="JSON object"):
        key_values(None, file, "parameter")
    with pytest.raises(CommandError, match="does not exist"):
        key_values(None, tmp_path / "absent.json", "parameter")


def test_a_folder_is_zipped_with_relative_paths_of_its_files(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    (adapter / "extra").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (adapter / "extra" / "notes.txt").write_text("n")
    with zipfile.ZipFile(io.BytesIO(adapter_zip(adapter))) as archive:
        assert sorted(archive.namelist()) == ["adapter_config.json",
                                              "adapter_model.safetensors", "extra/notes.txt"]
        assert archive.read("adapter_model.safetensors") == b"\0" * 64


def test_a_zip_is_sent_as_it_is_and_other_files_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("adapter/adapter_config.json", "{}")
    (tmp_path / "a.zip").write_bytes(buffer.getvalue())
    assert adapter_zip(tmp_path / "a.zip") == buffer.getvalue()
    (tmp_path / "a.txt").write_text("not a zip")
    with pytest.raises(CommandError, match="neither a .zip file nor an adapter folder"):
        adapter_zip(tmp_path / "a.txt")
    with pytest.raises(CommandError, match="does not exist"):
        adapter_zip(tmp_path / "absent")


@pytest.mark.parametrize("apihost,url", [
    ("http://127.0.0.1:3233", "http://127.0.0.1:3233/api/v1"),
    ("127.0.0.1:3233", "http://127.0.0.1:3233/api/v1"),
    ("localhost:3233/", "http://localhost:3233/api/v1"),
    ("openwhisk.example.com", "https://openwhisk.example.com/api/v1"),
    ("https://h.example/api/v1", "https://h.example/api/v1"),
    ("", ""),
])
def test_api_host_becomes_the_api_url(apihost: str, url: str) -> None:
    assert api_base_url(apihost) == url


def test_action_list_layout_is_wsk_s() -> None:
    actions = [{"namespace": "guest", "name": "pirate",
                "annotations": [{"key": "exec", "value": "lora"}]}]
    assert render.action_rows(actions) == f"actions\n{'/guest/pirate':<70} private lora"
    assert render.action_rows([]) == "actions"


def test_activation_list_layout_is_wsk_s() -> None:
    record = {"activationId": "a" * 32, "namespace": "guest", "name": "pirate",
              "version": "0.0.1", "start": 1_700_000_000_000, "end": 1_700_000_001_500,
              "duration": 1500, "statusCode": 1,
              "annotations": [{"key": "kind", "value": "lora"}, {"key": "initTime", "value": 9},
                              {"key": "startKind", "value": "cold"}]}
    header, row = render.activation_rows([record]).splitlines()
    assert header.split() == ["Datetime", "Activation", "ID", "Kind", "Start", "Duration",
                              "Status", "Entity"]
    assert row.split()[2:] == ["a" * 32, "lora", "cold", "1.5s", "application", "error",
                               "guest/pirate:0.0.1"]
    # Columns line up with the header.
    assert row.index("a" * 32) == header.index("Activation ID")
    assert row.index("cold") == header.index("Start")
    assert row.index("1.5s") == header.index("Duration")
    assert row.index("application") == header.index("Status")
    assert row.index("guest/") == header.index("Entity")


def test_activation_list_prints_the_record_s_start_kind() -> None:
    def record(start_kind: str | None, init_time: int | None) -> dict[str, object]:
        annotations = [{"key": "kind", "value": "lora"}, {"key": "initTime", "value": init_time},
                       {"key": "startKind", "value": start_kind}]
        return {"activationId": "b" * 32, "namespace": "guest", "name": "pirate",
                "version": "0.0.1", "start": 1_700_000_000_000, "end": 1_700_000_000_020,
                "duration": 20, "annotations": annotations}

    records = [record("prewarm", 145), record("preloaded", None), record("warm", None),
               record("cold", 2939), record(None, None)]
    header, *rows = render.activation_rows(records).splitlines()
    # A stem cell's start (it has an initTime) is a prewarm one, not cold.
    assert [row.split()[4] for row in rows] == ["prewarm", "preloaded", "warm", "cold", "-"]
    assert all(row.index("20ms") == header.index("Duration") for row in rows)


@pytest.mark.parametrize("milliseconds,text", [
    (0, "0s"), (850, "850ms"), (1000, "1s"), (1500, "1.5s"), (61_250, "1m1.25s"),
    (3_600_000, "1h0m0s"),
])
def test_durations_read_as_go_prints_them(milliseconds: int, text: str) -> None:
    assert render.go_duration(milliseconds) == text


def test_long_names_are_shortened_in_the_middle() -> None:
    shortened = render.truncate("a" * 10 + "b" * 30, 20)
    assert len(shortened) == 20 and shortened.startswith("aaaaaaaaaa...") \
        and shortened.endswith("b" * 7)


def parse(argv: list[str]) -> argparse.Namespace:
    """The client part of the `lorafaas` parser."""
    parser = argparse.ArgumentParser(prog="lorafaas")
    add_global_options(parser)
    add_client_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_global_flags_work_before_and_after_the_verb() -> None:
    before = parse(["--json", "--auth", "u:k", "action", "list"])
    after = parse(["action", "list", "--json", "--auth", "u:k", "-i"])
    neither = parse(["action", "list"])
    assert (before.json, before.auth) == (after.json, after.auth) == (True, "u:k")
    assert (neither.json, neither.auth, neither.apihost) == (False, None, None)


def test_repeated_params_and_annotations_are_kept_in_order() -> None:
    args = parse(["action", "create", "pirate", "adapter", "-p", "a", "1", "--param", "b", "x",
                  "--annotation", "description", "a pirate", "-t", "30000"])
    assert args.param == [["a", "1"], ["b", "x"]]
    assert args.annotation == [["description", "a pirate"]]
    assert (args.kind, args.timeout, args.memory) == (None, 30000, None)


class FakeApi:
    """Records calls; answers invokes with a given reply and lists with given records."""

    def __init__(self, reply: Reply | None = None,
                 records: list[dict[str, Any]] | None = None) -> None:
        self.reply = reply
        self.records = records or []
        self.calls: list[tuple[object, ...]] = []

    def invoke(self, *args: object) -> Reply | None:
        self.calls.append(("invoke", *args))
        return self.reply

    def list_activations(self, name: str | None, limit: int, skip: int
                         ) -> list[dict[str, Any]]:
        self.calls.append(("list", name, limit, skip))
        return [r for r in self.records if name in (None, r["name"])][skip:skip + limit]


def context(api: FakeApi) -> Context:
    """A verb context on the fake API."""
    config = ClientConfig(props_file=Path("/nonexistent"), apihost="", auth="", namespace="_")
    return Context(api, config)  # type: ignore[arg-type]


@pytest.mark.parametrize("status,argv,text,failed", [
    (202, [], "ok: invoked /_/pirate with id " + "c" * 32, False),
    (202, ["-b"], "ok: invoked /_/pirate, but the request has not yet finished, with id "
     + "c" * 32, True),
    (200, ["-r"], '{\n    "text": "x"\n}', False),
    (502, ["-r"], '{\n    "text": "x"\n}', True),
    (200, ["-b"], "ok: invoked /_/pirate with id " + "c" * 32 + '\n{\n    "text": "x"\n}', False),
])
def test_invoke_prints_as_wsk_does(status: int, argv: list[str], text: str,
                                   failed: bool) -> None:
    body = {"activationId": "c" * 32} if status == 202 else {"text": "x"}
    api = FakeApi(Reply(status, body, "c" * 32))
    args = parse(["action", "invoke", "pirate", "-p", "max_tokens", "8", *argv])
    output = commands.action_invoke(context(api), args)
    assert (output.text, output.failed) == (text, failed)
    blocking = bool(argv)
    assert api.calls == [("invoke", QualifiedName("_", None, "pirate"), {"max_tokens": 8}, blocking, argv == ["-r"])]


def test_poll_prints_each_new_activation_once_until_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = {"activationId": "a" * 32, "name": "pirate", "start": 1000, "logs": []}
    api = FakeApi(records=[old])
    clock = iter(range(0, 100, 3))
    monkeypatch.setattr(commands.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(commands.time, "sleep", lambda seconds: api.records.insert(0, {
        "activationId": f"{len(api.records):032x}", "name": "pirate",
        "start": 1000 + len(api.records), "logs": ["line"]}))
    args = parse(["activation", "poll", "pirate", "--exit", "10"])
    outputs = list(commands.activation_poll(context(api), args))
    assert [o.text for o in outputs[:2]] == ["Enter Ctrl-c to exit.", "Polling for activation logs"]
    blocks = [o.text for o in outputs[2:]]
    # The activation from before the poll is not shown; each new one once, oldest first.
    assert blocks == [f"\nActivation: 'pirate' ({n:032x})\n[\n    \"line\"\n]" for n in (1, 2)]
