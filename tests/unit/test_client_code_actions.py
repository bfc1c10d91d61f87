"""`lorafaas action create|update` of code actions: the `exec` wsk would send."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lorafaas.client import commands
from lorafaas.client.action_exec import artifact_exec
from lorafaas.client.output import CommandError
from tests.unit.test_client_cli import context, parse
from tests.unit.test_client_sequences import PutApi

SOURCE = "def main(args):\n    return {'echo': args}\n"


def zip_file(path: Path, files: dict[str, str]) -> Path:
    """A zip of `files` at `path`."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_a_py_file_is_sent_as_source_text_of_kind_python_default(tmp_path: Path) -> None:
    source = tmp_path / "hello.py"
    source.write_text(SOURCE)
    api = PutApi()
    commands.action_create(context(api), parse(  # type: ignore[arg-type]
        ["action", "create", "hello", str(source), "--main", "hi", "-p", "name", "x",
         "-a", "description", "says hi", "-l", "5"]))
    ((_, name, body, _),) = api.puts
    assert name == "hello"
    assert body["exec"] == {"kind": "python:default", "code": SOURCE, "main": "hi"}
    assert "binary" not in body["exec"]  # the server infers it, as OpenWhisk's does
    assert body["parameters"] == [{"key": "name", "value": "x"}]
    assert body["annotations"] == [{"key": "description", "value": "says hi"}]
    assert body["limits"] == {"logs": 5}


def test_a_zip_is_base64_its_kind_given_or_inferred_from_an_adapter(tmp_path: Path) -> None:
    code = zip_file(tmp_path / "code.zip", {"__main__.py": SOURCE})
    adapter = zip_file(tmp_path / "adapter.zip", {"pirate/adapter_config.json": "{}"})
    python = artifact_exec(code, "python:3", None)
    assert python["kind"] == "python:3"
    assert zipfile.ZipFile(io.BytesIO(base64.b64decode(python["code"]))).namelist() == \
        ["__main__.py"]
    assert artifact_exec(adapter, None, None)["kind"] == "lora"
    with pytest.raises(CommandError, match="requires specifying the action kind explicitly"):
        artifact_exec(code, None, None)


def test_a_folder_is_zipped_as_an_adapter_unless_a_kind_is_given(tmp_path: Path) -> None:
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "__main__.py").write_text(SOURCE)
    assert artifact_exec(tmp_path / "adapter", None, None)["kind"] == "lora"
    assert artifact_exec(tmp_path / "adapter", "python:3", "go")["main"] == "go"


@pytest.mark.parametrize(("name", "text", "message"), [
    ("notes.txt", "hello", "'.txt' is not a supported action runtime"),
    ("absent.py", None, "is not a valid file or it does not exist"),
])
def test_files_of_no_known_kind_are_refused(tmp_path: Path, name: str, text: str | None,
                                            message: str) -> None:
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(CommandError, match=message):
        artifact_exec(tmp_path / name, None, None)


class UpdateApi(PutApi):
    """An existing code action to update."""

    def get_action(self, name: Any, code: bool = False) -> dict[str, Any]:
        return {"name": name.name, "exec": {"kind": "python:3"},
                "parameters": [{"key": "a", "value": 1}], "annotations": [], "limits": {}}

    def put_action(self, name: Any, body: dict[str, Any],
                   overwrite: bool = False) -> dict[str, Any]:
        self.puts.append((name.namespace, name.relative, body, overwrite))
        return {"name": name.name}


def test_an_update_without_code_sends_no_exec_and_the_server_keeps_it() -> None:
    api = UpdateApi()
    commands.action_update(context(api), parse(  # type: ignore[arg-type]
        ["action", "update", "hello", "--web", "true"]))
    ((_, _, body, overwrite),) = api.puts
    assert overwrite and "exec" not in body
    assert body["parameters"] == [{"key": "a", "value": 1}]
    assert {"key": "web-export", "value": True} in body["annotations"]


@pytest.mark.parametrize("argv", [
    ["action", "update", "hello", "--main", "other"],
    ["action", "create", "chain", "--sequence", "a,b", "--kind", "python:3"],
])
def test_kind_and_main_need_code(argv: list[str]) -> None:
    with pytest.raises(CommandError, match="may not be specified|can only be specified"):
        commands.action_update(context(UpdateApi()), parse(argv))  # type: ignore[arg-type]


def test_web_false_unexports_as_wsk_does() -> None:
    api = UpdateApi()
    commands.action_update(context(api), parse(  # type: ignore[arg-type]
        ["action", "update", "hello", "--web", "false"]))
    ((_, _, body, _),) = api.puts
    assert body["annotations"] == [{"key": "web-export", "value": False},
                                   {"key": "raw-http", "value": False},
                                   {"key": "final", "value": False}]
