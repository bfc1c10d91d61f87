"""The `lorafaas` wsk-style verbs against a real platform: what a user types and sees."""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lorafaas import __version__
from lorafaas.cli import main

pytestmark = pytest.mark.docker

PROMPT = "Tell me about the weather today."
WRONG_KEY = "00000000-0000-0000-0000-000000000000:nope"


class Cli:
    """Runs `lorafaas ARGS` in a thread (the server runs in the test's loop)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        """Exit code, stdout and stderr of one command."""
        code = await asyncio.to_thread(self._main, list(argv))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    @staticmethod
    def _main(argv: list[str]) -> int:
        try:
            main(argv)
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 1
        return 0


@pytest.fixture
def cli(platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> Cli:
    """The CLI with its own LORAFAAS_HOME (an empty props file to start with)."""
    monkeypatch.setenv("LORAFAAS_HOME", str(tmp_path / "cli-home"))
    monkeypatch.delenv("LORAFAAS_APIHOST", raising=False)
    monkeypatch.delenv("LORAFAAS_AUTH", raising=False)
    return Cli(capsys)


def api_host(platform) -> str:  # type: ignore[no-untyped-def]
    """The running platform's URL."""
    return str(platform.client.make_url("/")).rstrip("/")


def after_heading(out: str, heading: str) -> Any:
    """The JSON printed under wsk's `ok: ...` line."""
    first, _, rest = out.partition("\n")
    assert first == heading
    return json.loads(rest)


async def test_properties_actions_and_activations(platform, cli, demo_models, make_zip,  # type: ignore[no-untyped-def]
                                                  tmp_path: Path) -> None:
    host, adapter = api_host(platform), str(demo_models.adapters["pirate"])

    # property set / get, on $LORAFAAS_HOME/props
    code, out, _ = await cli("property", "set", "--apihost", host, "--auth", platform.credential)
    assert code == 0
    assert out.splitlines() == [
        "ok: whisk auth set. Run 'lorafaas property get --auth' to see the new value.",
        f"ok: whisk API host set to {host}"]
    assert await cli("property", "get", "--apihost") == (0, f"whisk API host\t\t{host}\n", "")
    code, out, _ = await cli("property", "get", "--json")
    assert json.loads(out) == {"auth": platform.credential, "apihost": host, "apiversion": "v1",
                               "namespace": "_", "cliversion": __version__,
                               "apibuild": __version__}

    # create, and create again: the server's 409 message, exit 1
    assert await cli("action", "create", "pirate", adapter, "--kind", "lora") == \
        (0, "ok: created action pirate\n", "")
    code, out, err = await cli("action", "create", "pirate", adapter, "--kind", "lora")
    assert (code, out) == (1, "")
    assert re.fullmatch(r"error: Unable to create action 'pirate': resource already exists; "
                        r"--overwrite replaces it, 'action update' changes only what it is "
                        r"given \(code [0-9a-f]+\)\n", err), err
    assert await cli("action", "create", "pirate", adapter, "--overwrite") == \
        (0, "ok: created action pirate\n", "")

    # update without an adapter keeps it; with a zip replaces it; annotations accumulate
    assert await cli("action", "update", "pirate", "-a", "description", "a pirate") == \
        (0, "ok: updated action pirate\n", "")
    zip_path = tmp_path / "pirate.zip"
    zip_path.write_bytes(make_zip(demo_models.adapters["pirate"]))
    assert await cli("action", "update", "pirate", str(zip_path), "--timeout", "300000") == \
        (0, "ok: updated action pirate\n", "")
    code, out, _ = await cli("--json", "action", "get", "pirate")
    action = json.loads(out)
    assert (code, action["name"], action["version"]) == (0, "pirate", "0.0.4")
    assert action["limits"]["timeout"] == 300000 and "code" not in action["exec"]
    assert {"key": "description", "value": "a pirate"} in action["annotations"]

    code, out, _ = await cli("action", "get", "pirate")
    assert code == 0 and after_heading(out, "ok: got action pirate")["version"] == "0.0.4"
    code, out, _ = await cli("action", "list")
    assert (code, out) == (0, f"actions\n{'/guest/pirate':<70} private lora\n")

    # blocking invoke: the result only, or the whole record under the heading
    code, out, err = await cli("action", "invoke", "pirate", "--param", "prompt", PROMPT,
                               "--param", "max_tokens", "8", "--blocking", "--result")
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] and 0 < result["usage"]["completion_tokens"] <= 8
    code, out, _ = await cli("action", "invoke", "pirate", "-p", "prompt", PROMPT,
                             "-p", "max_tokens", "8", "--blocking")
    first_line = out.partition("\n")[0]
    record = after_heading(out, first_line)
    assert code == 0 and first_line == f"ok: invoked /_/pirate with id {record['activationId']}"
    assert record["response"]["result"]["text"] == result["text"]

    # non-blocking invoke prints the id; poll waits for it; get, logs, result read it
    code, out, _ = await cli("action", "invoke", "pirate", "-p", "prompt", PROMPT,
                             "-p", "max_tokens", "4")
    found = re.fullmatch(r"ok: invoked /_/pirate with id ([0-9a-f]{32})\n", out)
    assert code == 0 and found, out
    activation_id = found.group(1)
    code, out, _ = await cli("activation", "poll", activation_id, "--exit", "120")
    assert code == 0 and f"\nActivation: 'pirate' ({activation_id})\n" in out
    code, out, _ = await cli("activation", "get", activation_id)
    record = after_heading(out, f"ok: got activation {activation_id}")
    assert code == 0 and record["activationId"] == activation_id
    assert record["response"]["success"] and record["version"] == "0.0.4"
    code, out, _ = await cli("activation", "logs", activation_id)
    assert code == 0 and out == "".join(f"{line}\n" for line in record["logs"])
    code, out, _ = await cli("activation", "result", activation_id)
    assert code == 0 and json.loads(out) == record["response"]["result"]
    code, out, _ = await cli("activation", "result", "--last")
    assert code == 0 and json.loads(out) == record["response"]["result"]
    code, out, _ = await cli("activation", "list", "pirate")
    header, *rows = out.splitlines()
    assert code == 0 and header.split()[:3] == ["Datetime", "Activation", "ID"] and len(rows) == 3
    assert rows[0].split()[2:5] == [activation_id, "lora", "warm"]
    assert rows[-1].split()[4] == "cold"  # the record's startKind, the first invoke's
    assert rows[0].split()[-2:] == ["success", "guest/pirate:0.0.4"]

    # delete; then the action is gone, with the server's 404 message
    assert await cli("action", "delete", "pirate") == (0, "ok: deleted action pirate\n", "")
    code, out, err = await cli("action", "get", "pirate")
    assert (code, out) == (1, "")
    assert err.startswith("error: Unable to get action 'pirate': "
                          "The requested resource does not exist. (code ")
    assert await cli("action", "list") == (0, "actions\n", "")


async def test_a_wrong_or_missing_key_fails_with_the_server_s_401_message(platform, cli):  # type: ignore[no-untyped-def]
    host = api_host(platform)
    code, out, err = await cli("--apihost", host, "--auth", WRONG_KEY, "action", "list")
    assert (code, out) == (1, "")
    assert re.fullmatch(r"error: Unable to obtain the list of actions for namespace '_': "
                        r"The supplied authentication is invalid \(code [0-9a-f]+\)\n", err), err
    code, out, err = await cli("activation", "list", "--apihost", host)
    assert (code, out) == (1, "")
    assert "The resource requires authentication, which was not supplied" in err
    code, _, err = await cli("action", "list")
    assert code == 1 and "An API host must be provided" in err


HELLO = "def main(args):\n    return {'greeting': 'hello ' + args.get('name', 'world')}\n"
SHOUT = "def shout(args):\n    return {'greeting': args['greeting'].upper() + '!'}\n"


async def test_code_actions_sequences_and_web_actions(platform, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = api_host(platform)
    await cli("property", "set", "--apihost", host, "--auth", platform.credential)
    (tmp_path / "hello.py").write_text(HELLO)
    (tmp_path / "shout.py").write_text(SHOUT)
    with zipfile.ZipFile(tmp_path / "code.zip", "w") as archive:
        archive.writestr("__main__.py", HELLO)

    # A .py file is a python:3 action (wsk's inference); --main names its entry point.
    assert await cli("action", "create", "hello", str(tmp_path / "hello.py")) == \
        (0, "ok: created action hello\n", "")
    assert await cli("package", "create", "tools") == (0, "ok: created package tools\n", "")
    assert await cli("action", "create", "tools/shout", str(tmp_path / "shout.py"),
                     "--main", "shout") == (0, "ok: created action tools/shout\n", "")
    code, out, _ = await cli("--json", "action", "get", "tools/shout")
    shout = json.loads(out)
    assert code == 0 and (shout["exec"]["kind"], shout["exec"]["main"]) == ("python:3", "shout")
    assert "code" not in shout["exec"]

    # A zip needs --kind unless it is an adapter (wsk's message); with it, the zip runs.
    code, out, err = await cli("action", "create", "zipped", str(tmp_path / "code.zip"))
    assert (code, out) == (1, "") and "requires specifying the action kind explicitly" in err
    assert await cli("action", "create", "zipped", str(tmp_path / "code.zip"),
                     "--kind", "python:3") == (0, "ok: created action zipped\n", "")

    # invoke prints a code action's result; --blocking the record under the heading
    code, out, err = await cli("action", "invoke", "zipped", "-p", "name", "zip", "-r")
    assert (code, json.loads(out)) == (0, {"greeting": "hello zip"}), err
    code, out, _ = await cli("action", "invoke", "hello", "-p", "name", "you", "--blocking")
    first_line = out.partition("\n")[0]
    record = after_heading(out, first_line)
    assert first_line == f"ok: invoked /_/hello with id {record['activationId']}"
    assert record["response"]["result"] == {"greeting": "hello you"}

    # A sequence of an action and a package's action: components shown, results chained.
    assert await cli("action", "create", "chain", "--sequence", "hello,tools/shout") == \
        (0, "ok: created action chain\n", "")
    code, out, _ = await cli("action", "get", "chain", "--summary")
    assert (code, out.splitlines()) == (0, [
        "action /guest/chain", "   (kind: sequence)", "   (component: /guest/hello)",
        "   (component: /guest/tools/shout)", "   (parameters: none defined)"])
    code, out, err = await cli("action", "invoke", "chain", "-p", "name", "lora", "-r")
    assert (code, json.loads(out)) == (0, {"greeting": "HELLO LORA!"}), err
    code, out, _ = await cli("action", "list")
    header, *rows = out.splitlines()
    assert (code, header) == (0, "actions")
    assert sorted(rows) == [f"{name:<70} private {kind}" for name, kind in (
        ("/guest/chain", "sequence"), ("/guest/hello", "python:3"),
        ("/guest/tools/shout", "python:3"), ("/guest/zipped", "python:3"))]

    # --web true exports it (with final parameters); --url prints where it answers, no key.
    assert await cli("action", "update", "hello", "--web", "true", "-p", "name", "web") == \
        (0, "ok: updated action hello\n", "")
    code, out, _ = await cli("action", "get", "hello", "--url")
    url = f"{host}/api/v1/web/guest/default/hello"
    assert (code, out) == (0, f"ok: got action hello\n{url}\n")
    answer = await platform.client.get("/api/v1/web/guest/default/hello.json")
    assert (answer.status, await answer.json()) == (200, {"greeting": "hello web"})
    final = await platform.client.get("/api/v1/web/guest/default/hello.json",
                                      params={"name": "override"})
    assert final.status == 400  # wsk's --web makes the parameters final
    code, out, _ = await cli("action", "get", "hello", "--summary")
    assert out.splitlines()[:2] == ["action /guest/hello", "   (kind: python:3)"]

    # Other files need a kind; a kind or --main without code is refused.
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = await cli("action", "create", "notes", str(tmp_path / "notes.txt"))
    assert code == 1 and "'.txt' is not a supported action runtime" in err
    code, _, err = await cli("action", "update", "hello", "--main", "other")
    assert code == 1 and "can only be specified when you provide a code artifact" in err
