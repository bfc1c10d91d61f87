"""Code actions and handlers, their pure parts: the PUT body's kinds and limits, staging
the code, calling the owner's entry point as OpenWhisk's Python runtime does, a handler's
`llm` accounting, and the GB-seconds a code action is billed."""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from lorafaas.billing.metering import DURATION, activation_usage, code_action_usage
from lorafaas.controller.protocol import (
    CODE_MEMORY_MB,
    PYTHON_KIND,
    create_content,
    limit_ranges,
    parse_action_body,
)
from lorafaas.errors import AdapterRejected, BadRequest
from lorafaas.registry.code_artifacts import CodeExec, read_exec, stage_code
from lorafaas.runtime.handler import LLM, LLMError, run_handler
from lorafaas.runtime.request import GenerationRequest, parse_request
from lorafaas.runtime.user_code import (
    NOT_A_DICTIONARY,
    UserCodeError,
    apply_run_env,
    call_entry,
    load_entry,
)

RANGES = limit_ranges(60_000, 2048)
SOURCE = "def main(args):\n    return {'greeting': 'hello ' + args.get('name', 'world')}\n"


def python_body(code: Any, **exec_extra: Any) -> dict[str, Any]:
    return {"exec": {"kind": "python:3", "code": code, **exec_extra}}


def test_a_python_action_from_source_takes_openwhisk_s_limits() -> None:
    body = parse_action_body(python_body(SOURCE), RANGES)
    assert (body.kind, body.code, body.binary, body.main) == (PYTHON_KIND, SOURCE, False, None)
    assert body.limits is None  # only what the body sent: a create fills in the defaults
    staged = dataclasses.replace(body, code=Path("staged/__main__.py"))
    assert create_content(staged, RANGES).limits == {
        "timeout": 60_000, "concurrency": 1, "memory": CODE_MEMORY_MB, "logs": 10}
    with pytest.raises(BadRequest, match="unknown limits: max_tokens"):
        parse_action_body({**python_body(SOURCE), "limits": {"max_tokens": 4}}, RANGES)


def test_a_kind_is_read_trimmed_and_in_any_case_as_openwhisk_reads_it() -> None:
    assert parse_action_body(python_body(SOURCE) | {"exec": {"kind": " Python:3 ",
                                                             "code": SOURCE}},
                             RANGES).kind == PYTHON_KIND


def test_python_default_is_stored_as_python_3_and_a_zip_is_binary(tmp_path: Path) -> None:
    staged = tmp_path / "upload.zip"
    body = parse_action_body({"exec": {"kind": "python:default", "code": staged,
                                       "binary": True, "main": "handle"}}, RANGES)
    assert (body.kind, body.code, body.binary, body.main) == (PYTHON_KIND, staged, True,
                                                              "handle")


@pytest.mark.parametrize("kind", ["nodejs:20", "nodejs:default", "python:2", "java"])
def test_other_kinds_are_refused_naming_the_kinds_served(kind: Any) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_action_body(python_body(SOURCE) | {"exec": {"kind": kind, "code": SOURCE}},
                          RANGES)
    assert refused.value.status == 400
    assert "the kinds served are: lora, python:3 (also python:default)" in str(refused.value)


@pytest.mark.parametrize("exec_field, message", [
    ({"kind": "python:3", "code": "   "}, "exec.code must be the action's source text"),
    ({"kind": "python:3", "code": 7}, "exec.code must be the action's source text"),
    ({"kind": "python:3", "code": SOURCE, "main": "not valid"}, "exec.main must name"),
    ({"kind": "python:3", "code": SOURCE, "main": 3}, "exec.main must name"),
])
def test_bad_code_is_refused(exec_field: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_action_body({"exec": exec_field}, RANGES)


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def staged(tmp_path: Path, data: bytes, code_exec: CodeExec) -> Path:
    folder = tmp_path / os.urandom(4).hex()
    folder.mkdir()
    (folder / "upload.zip").write_bytes(data)
    return stage_code(folder / "upload.zip", code_exec, 1 << 20).directory


def test_source_and_zip_are_staged_with_their_exec(tmp_path: Path) -> None:
    source = staged(tmp_path, SOURCE.encode(), CodeExec(PYTHON_KIND))
    assert (source / "__main__.py").read_text() == SOURCE
    assert read_exec(source) == CodeExec(PYTHON_KIND, "main", False)
    packed = staged(tmp_path, zip_of({"__main__.py": "from lib.words import w\n",
                                      "lib/words.py": "w = 1\n"}),
                    CodeExec(PYTHON_KIND, "handle", binary=True))
    assert (packed / "lib" / "words.py").read_text() == "w = 1\n"
    assert read_exec(packed) == CodeExec(PYTHON_KIND, "handle", True)
    assert oct((packed / "lib").stat().st_mode & 0o777) == "0o755"
    assert oct((packed / "lib" / "words.py").stat().st_mode & 0o777) == "0o644"


def test_the_digest_covers_the_entry_point(tmp_path: Path) -> None:
    digests = set()
    for main in ("main", "other"):
        folder = tmp_path / main
        folder.mkdir()
        (folder / "upload.zip").write_text(SOURCE)
        digests.add(stage_code(folder / "upload.zip", CodeExec(PYTHON_KIND, main), 1 << 20)
                    .digest)
    assert len(digests) == 2


@pytest.mark.parametrize("files, message", [
    ({"main.py": SOURCE}, "no __main__.py at its top level"),
    ({"../__main__.py": SOURCE}, "escapes"),
])
def test_a_zip_without_main_or_with_an_escaping_path_is_refused(
        tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(AdapterRejected, match=message):
        staged(tmp_path, zip_of(files), CodeExec(PYTHON_KIND, binary=True))


def test_source_that_is_not_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AdapterRejected, match="not UTF-8"):
        staged(tmp_path, b"\xff\xfe\x00", CodeExec(PYTHON_KIND))


def entry_from(tmp_path: Path, source: str, main: str = "main") -> Any:
    folder = tmp_path / os.urandom(4).hex()
    folder.mkdir()
    (folder / "__main__.py").write_text(source)
    return load_entry(folder, main)


def test_results_errors_and_non_dictionaries_as_openwhisk(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert call_entry(entry_from(tmp_path, SOURCE), {"name": "ann"}).result == {
        "greeting": "hello ann"}
    failing = call_entry(entry_from(tmp_path, "def main(a):\n    raise KeyError('x')\n"), {})
    assert failing.result == {"error": "'x'"} and not failing.developer_error
    assert "Traceback" in capsys.readouterr().err  # the activation's logs
    for returned in ("'text'", "[1, 2]", "None", "{'f': object()}"):
        outcome = call_entry(entry_from(tmp_path, f"def main(a):\n    return {returned}\n"), {})
        assert outcome.result == {"error": NOT_A_DICTIONARY} and outcome.developer_error
    exits = call_entry(entry_from(tmp_path, "import sys\ndef main(a):\n    sys.exit(3)\n"), {})
    assert exits.result == {"error": "3"}


def test_loading_fails_without_the_entry_point_or_on_a_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(UserCodeError, match="no function 'handle'"):
        entry_from(tmp_path, SOURCE, "handle")
    with pytest.raises(UserCodeError, match="SyntaxError"):
        entry_from(tmp_path, "def main(:\n")
    with pytest.raises(UserCodeError, match="no __main__.py"):
        load_entry(tmp_path / "empty")


def test_run_fields_become_ow_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("__OW_ACTIVATION_ID", raising=False)
    apply_run_env({"value": {"a": 1}, "activation_id": "abc", "namespace": "guest",
                   "deadline": 12, "logs": True})
    assert os.environ["__OW_ACTIVATION_ID"] == "abc"
    assert os.environ["__OW_NAMESPACE"] == "guest" and os.environ["__OW_DEADLINE"] == "12"
    assert "__OW_LOGS" not in os.environ and "__OW_VALUE" not in os.environ
    for key in ("__OW_ACTIVATION_ID", "__OW_NAMESPACE", "__OW_DEADLINE"):
        monkeypatch.delenv(key)


def fake_generate(request: GenerationRequest) -> tuple[dict[str, Any], dict[str, float]]:
    """A generation that echoes its prompt, 3 prompt tokens and max_tokens new ones."""
    return ({"text": request.prompt.upper(), "finish_reason": "length",
             "usage": {"prompt_tokens": 3, "completion_tokens": request.max_tokens}},
            {"ttft": 5.0, "prefill": 5.0, "decode": 10.0, "total": 15.0, "compute": 15.0})


def test_a_handler_s_llm_calls_are_its_timings_and_tokens(tmp_path: Path) -> None:
    handler = entry_from(tmp_path, "def main(args, llm):\n"
                                   "    one = llm(args['p'], max_tokens=2)\n"
                                   "    two = llm(messages=[{'content': one['text']}],"
                                   " max_tokens=4)\n"
                                   "    return {'texts': [one['text'], two['text']]}\n")
    llm = LLM(lambda v: parse_request(v, 8), fake_generate, exclusive=True)
    outcome, timings = run_handler(handler, {"p": "hi"}, llm)
    assert outcome.result == {"texts": ["HI", "USER: HI\nASSISTANT:"]}
    assert timings["promptTokens"] == 6 and timings["completionTokens"] == 6
    assert timings["llmCalls"] == 2 and timings["compute"] == 30.0
    assert timings["ttft"] >= 5.0 and timings["total"] >= 0
    with pytest.raises(LLMError, match="'max_tokens' must be between 1 and 8"):
        llm("x", max_tokens=99)
    usage = activation_usage(timings, 1024, {"usage": {"prompt_tokens": 0}})
    assert (usage.prompt_tokens, usage.completion_tokens) == (6, 6)  # not the owner's claim


def test_a_code_action_is_billed_its_run_time_by_its_memory() -> None:
    usage = code_action_usage({"total": 1500.0}, 512)
    assert usage.gb_s == pytest.approx(0.75) and usage.accelerator_s == 0
    assert (usage.prompt_tokens, usage.completion_tokens, usage.measure) == (0, 0, DURATION)
    assert code_action_usage({}, 512).gb_s == 0
