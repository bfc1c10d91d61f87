"""Each console template reads exactly the fields of its page's context object."""

from __future__ import annotations

from dataclasses import fields

import jinja2
import pytest
from jinja2 import meta

from lorafaas.console.pages import (
    PAGES,
    ActivationRow,
    Chrome,
    ErrorPage,
    FunctionRow,
    FunctionsPage,
)
from lorafaas.console.stats import percentile, ttft_buckets
from lorafaas.console.wiring import TEMPLATES_DIR, template_environment_options

FRAME = {"chrome"}  # every page's frame, from render.chrome()
PARTIAL_PARAMETERS = {"field"}  # set by `{% with %}` around an include


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                              **template_environment_options())  # type: ignore[arg-type]


def variables(env: jinja2.Environment, name: str, seen: set[str] | None = None) -> set[str]:
    """Undeclared variables of a template and of every template it extends or includes."""
    seen = set() if seen is None else seen
    seen.add(name)
    source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
    ast = env.parse(source)
    found = set(meta.find_undeclared_variables(ast))
    for child in meta.find_referenced_templates(ast):
        if child is not None and child not in seen:
            found |= variables(env, child, seen)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.__name__)
def test_template_reads_exactly_the_context_fields(page: type) -> None:
    used = variables(environment(), page.TEMPLATE) - PARTIAL_PARAMETERS
    assert used == {f.name for f in fields(page)} | FRAME


def test_a_missing_field_fails_the_render_instead_of_showing_blank() -> None:
    template = environment().get_template(FunctionsPage.TEMPLATE)
    with pytest.raises(jinja2.UndefinedError):
        template.render(chrome=Chrome("guest", False, "t", "functions"))


def test_functions_page_renders_its_rows_escaped() -> None:
    row = FunctionRow("<pirate>", "0.0.1", "warm", 1, None, 3, 0.25, "llama-1b")
    html = environment().get_template(FunctionsPage.TEMPLATE).render(
        chrome=Chrome("guest", True, "tok", "functions"), functions=[row])
    assert "&lt;pirate&gt;" in html and "<pirate>" not in html
    assert "<code>llama-1b</code>" in html
    assert "$0.250000" in html and 'value="tok"' in html


def test_error_page_shows_message_and_request_id() -> None:
    html = environment().get_template(ErrorPage.TEMPLATE).render(
        chrome=Chrome(None, False, "t", "error"), status=404, message="Not here.",
        request_id="abc123")
    assert "Not here." in html and "abc123" in html


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 90), percentile(values, 99)) == \
        (50.0, 90.0, 99.0)
    assert percentile([], 50) is None


def test_activation_row_fields_are_what_the_table_reads() -> None:
    names = {f.name for f in fields(ActivationRow)}
    assert {"activation_id", "ttft_ms", "start_kind", "cost"} <= names
    assert next(label for label, _ in ttft_buckets([])) == "< 50 ms"


def test_function_state_uses_the_start_kind_vocabulary() -> None:
    from lorafaas.console.data import function_state

    def views(*states: str) -> list[dict[str, object]]:
        return [{"function": "ns/f", "state": s} for s in states]

    assert function_state(views("starting"), "ns/f") == ("starting", 1)
    assert function_state(views("preloaded", "starting"), "ns/f") == ("preloaded", 2)
    assert function_state(views("busy"), "ns/f") == ("warm", 1)
    assert function_state([], "ns/f") == ("cold", 0)


def test_call_snippets_name_the_function_and_the_endpoint() -> None:
    from lorafaas.console.snippets import call_snippets

    snippets = {s.key: s.code for s in call_snippets("http://h:1", "ns", "pirate", 16)}
    assert "http://h:1/v1/completions" in snippets["curl"]
    assert '"model": "ns/pirate"' in snippets["curl"] and '"max_tokens": 16' in snippets["curl"]
    assert 'base_url="http://h:1/v1"' in snippets["python"] and "ns/pirate" in snippets["python"]
    assert "--apihost http://h:1" in snippets["cli"]
    assert "action invoke pirate" in snippets["cli"]


def test_edited_limits_refuse_a_blank_or_fractional_field() -> None:
    from lorafaas.console.functions import edited_limits
    from lorafaas.errors import BadRequest

    form = {"memory": "1024", "timeout": "5000", "max_tokens": "64", "slo_ttft_ms": "900"}
    current = {"memory": 2048, "timeout": 60000, "max_tokens": 512, "slo_ttft_ms": 2000,
               "concurrency": 3}
    assert edited_limits(form, current) == {**form | {k: int(v) for k, v in form.items()},
                                            "concurrency": 3}
    with pytest.raises(BadRequest, match="max tokens must be a whole number"):
        edited_limits({**form, "max_tokens": "6.5"}, current)
    with pytest.raises(BadRequest, match="memory"):
        edited_limits({**form, "memory": ""}, current)


def test_playground_body_builds_a_chat_from_system_turns_and_message() -> None:
    from lorafaas.console.functions import playground_body
    from lorafaas.errors import BadRequest

    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    chat, body = playground_body({"mode": "chat", "system": "Be brief.", "turns": turns,
                                  "message": "c", "stop": "END\n\n###", "max_tokens": "8"})
    assert chat and body["messages"] == [{"role": "system", "content": "Be brief."}, *turns,
                                         {"role": "user", "content": "c"}]
    assert body["stop"] == ["END", "###"] and body["max_tokens"] == 8
    chat, body = playground_body({"mode": "prompt", "prompt": "hi", "system": "ignored"})
    assert not chat and body == {"prompt": "hi"}
    with pytest.raises(BadRequest, match="Write a message"):
        playground_body({"mode": "chat", "message": " "})


def _record(annotations: dict[str, object], success: bool = True,
            result: object = None) -> object:
    from lorafaas.registry.models import Activation

    return Activation(activation_id="a", namespace="ns", name="f", version="0.0.1",
                      subject="s", start_ms=0, end_ms=1000, status_code=0 if success else 2,
                      logs=[], response={"success": success, "result": result or {}},
                      annotations=[{"key": k, "value": v} for k, v in annotations.items()])


def test_timeline_splits_the_duration_into_queue_init_prefill_decode() -> None:
    from lorafaas.console.activations import init_segments, timeline

    row = _record({"waitTime": 100, "initTime": 400, "ttft": 600,
                   "initBreakdown": {"libraries": 300, "adapter": 100}})
    phases = timeline(row, init_segments(row)[0])  # type: ignore[arg-type]
    assert [(p.label, p.kind, round(p.ms)) for p in phases] == [
        ("queue", "queue", 100), ("libraries", "init", 300), ("adapter", "init", 100),
        ("prefill", "prefill", 100), ("decode", "decode", 400)]
    assert round(sum(p.percent for p in phases)) == 100
    failed = _record({"waitTime": 200}, success=False)
    assert [(p.kind, p.ms) for p in timeline(failed, [])] == [  # type: ignore[arg-type]
        ("queue", 200.0), ("run", 800.0)]


def test_init_note_says_warm_only_for_a_warm_container() -> None:
    from lorafaas.console.activations import init_note

    assert "warm container" in init_note(_record({"startKind": "warm"}))  # type: ignore[arg-type]
    timed_out = _record({"startKind": "cold", "timeout": True}, success=False)
    assert "timed out" in init_note(timed_out)  # type: ignore[arg-type]
    failed = _record({"startKind": "cold"}, success=False)
    assert "did not start" in init_note(failed)  # type: ignore[arg-type]
    assert "before it ran" in init_note(_record({}, success=False))  # type: ignore[arg-type]


def test_a_long_error_folds_to_its_first_line_and_json_keeps_quotes() -> None:
    from lorafaas.console.activations import as_json, error_head

    assert error_head("short") is None
    assert error_head("it's wrong:\nline 2") == "it's wrong:"
    assert error_head("x" * 500) == "x" * 159 + "…"
    assert as_json({"error": "it's é"}) == '{\n  "error": "it\'s é"\n}'


def test_footprints_sum_a_process_tree_from_proc(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from lorafaas.console.memory import Footprint, footprints

    def process(pid: int, ppid: int, rss_kb: int, pss_kb: int) -> None:
        folder = tmp_path / str(pid)
        folder.mkdir()
        (folder / "stat").write_text(f"{pid} (a (b) c) S {ppid} 1 1")
        (folder / "smaps_rollup").write_text(f"00 [rollup]\nRss: {rss_kb} kB\nPss: {pss_kb} kB\n")

    process(10, 1, 2048, 1024)
    process(11, 10, 1024, 512)
    process(12, 11, 1024, 512)
    process(20, 1, 4096, 4096)
    assert footprints([10, 99], proc=tmp_path) == {10: Footprint(4.0, 2.0), 99: None}
    mine = footprints([os.getpid()])[os.getpid()]
    assert mine is not None and 0 < mine.pss_mb <= mine.rss_mb


def test_triggers_page_lists_feeds_rules_and_escapes() -> None:
    from lorafaas.console.pages import RuleRow, TriggerRow, TriggersPage

    trigger = TriggerRow("<tick>", "0.0.1", "/whisk.system/alarms/alarm (* * * * *)",
                         ["r → guest/p (active)"], None)
    html = environment().get_template(TriggersPage.TEMPLATE).render(
        chrome=Chrome("guest", False, "tok", "triggers"), triggers=[trigger],
        rules=[RuleRow("r", "/guest/<tick>", "/guest/p", "inactive")])
    assert "&lt;tick&gt;" in html and "<tick>" not in html
    assert "<code>/whisk.system/alarms/alarm (* * * * *)</code>" in html
    assert "r → guest/p (active)" in html and "<td>inactive</td>" in html
