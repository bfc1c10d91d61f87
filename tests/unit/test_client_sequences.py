"""`lorafaas action create NAME --sequence a,b` and `--web`: the PUT bodies they send."""

from __future__ import annotations

from typing import Any

import pytest

from lorafaas.client import commands
from lorafaas.client.output import CommandError
from lorafaas.names import QualifiedName
from tests.unit.test_client_cli import context, parse


class PutApi:
    """Records the PUTs of actions."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, str, dict[str, Any], bool]] = []

    def put_action(self, name: QualifiedName, body: dict[str, Any],
                   overwrite: bool = False) -> dict[str, Any]:
        self.puts.append((name.namespace, name.relative, body, overwrite))
        return {"name": name.name, "exec": body["exec"]}


def test_a_sequence_is_created_from_comma_separated_names() -> None:
    api = PutApi()
    args = parse(["action", "create", "chain", "--sequence", "pirate, /other/shout,pkg/x",
                  "-p", "max_tokens", "4"])
    output = commands.action_create(context(api), args)  # type: ignore[arg-type]
    ((namespace, name, body, overwrite),) = api.puts
    assert (namespace, name, overwrite) == ("_", "chain", False)
    assert body["exec"] == {"kind": "sequence",
                            "components": ["/_/pirate", "/other/shout", "/_/pkg/x"]}
    assert body["parameters"] == [{"key": "max_tokens", "value": 4}]
    assert output.text == "ok: created action chain"


@pytest.mark.parametrize(("argv", "message"), [
    (["action", "create", "chain", "adapter", "--sequence", "a"], "takes no adapter"),
    (["action", "create", "chain", "--sequence", " , "], "at least one action"),
    (["action", "create", "chain"], "code artifact are required"),
])
def test_a_sequence_without_components_or_with_an_adapter_is_refused(
        argv: list[str], message: str) -> None:
    api = PutApi()
    with pytest.raises(CommandError, match=message):
        commands.action_create(context(api), parse(argv))  # type: ignore[arg-type]
    assert api.puts == []


def test_web_makes_a_web_action_with_final_parameters_as_wsk_does() -> None:
    api = PutApi()
    commands.action_create(context(api), parse(  # type: ignore[arg-type]
        ["action", "create", "hello", "--sequence", "pirate", "--web", "true"]))
    commands.action_create(context(api), parse(  # type: ignore[arg-type]
        ["action", "create", "raw", "--sequence", "pirate", "--web", "raw"]))
    (_, _, web, _), (_, _, raw, _) = api.puts
    assert web["annotations"] == [{"key": "web-export", "value": True},
                                  {"key": "raw-http", "value": False},
                                  {"key": "final", "value": True}]
    assert {"key": "raw-http", "value": True} in raw["annotations"]
    with pytest.raises(CommandError, match="--web"):
        commands.action_create(context(api), parse(  # type: ignore[arg-type]
            ["action", "create", "x", "--sequence", "a", "--web", "maybe"]))
