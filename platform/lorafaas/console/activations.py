"""An activation's page (record, parameters, timeline, error, logs) and its playground summary."""

from __future__ import annotations

import json

from aiohttp import web

from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import ActivationPage, InitSegment, Phase
from lorafaas.console.render import render_page
from lorafaas.console.stats import activation_row, annotation, usage_of
from lorafaas.controller.appkeys import sessions_key
from lorafaas.registry.activations import activation_json, get_activation
from lorafaas.registry.models import Activation
from lorafaas.start_kinds import WARM

ERROR_HEAD_CHARS = 160  # an error longer than this, or of several lines, is folded


async def _activation(request: web.Request) -> Activation:
    identity = request[console_identity_key]
    async with request.app[sessions_key]() as session:
        return await get_activation(session, identity.namespace, request.match_info["id"])


def init_segments(row: Activation) -> tuple[list[InitSegment], float]:
    """Each artifact's load time and share of the initialization, in load order."""
    breakdown = annotation(row, "initBreakdown")
    if not isinstance(breakdown, dict):
        return [], 0.0
    times = {str(k): float(v) for k, v in breakdown.items() if isinstance(v, int | float)}
    total = sum(times.values())
    return [InitSegment(name, ms, 100 * ms / total if total else 0.0)
            for name, ms in times.items()], total


def _ms(row: Activation, key: str) -> float | None:
    value = annotation(row, key)
    return float(value) if isinstance(value, int | float) else None


def timeline(row: Activation, segments: list[InitSegment]) -> list[Phase]:
    """Queue, each artifact's load, prefill and decode, as shares of the duration; without a
    first token, what followed the queue and initialization is one `run` phase."""
    duration = float(row.end_ms - row.start_ms)
    wait, init, ttft = _ms(row, "waitTime") or 0.0, _ms(row, "initTime") or 0.0, _ms(row, "ttft")
    phases: list[tuple[str, str, float]] = [("queue", "queue", wait)]
    loaded = sum(s.ms for s in segments)
    phases += [(s.artifact, "init", s.ms * init / loaded if loaded else 0.0) for s in segments]
    if init and not segments:
        phases.append(("initialization", "init", init))
    if ttft is not None:
        phases += [("prefill", "prefill", max(0.0, ttft - wait - init)),
                   ("decode", "decode", max(0.0, duration - ttft))]
    else:
        phases.append(("run", "run", max(0.0, duration - wait - init)))
    total = sum(ms for _, _, ms in phases)
    return [Phase(label, kind, ms, 100 * ms / total) for label, kind, ms in phases
            if ms > 0 and total > 0]


def init_note(row: Activation) -> str:
    """What to say where there is no init breakdown: only a warm container had no start."""
    kind = annotation(row, "startKind")
    if kind == WARM:
        return "No initialization: the activation ran in a warm container."
    if annotation(row, "timeout"):
        return "No initialization finished: the activation timed out first."
    if not row.response.get("success") and not kind:
        return "No container was started for it: the activation failed before it ran."
    if not row.response.get("success"):
        return "No initialization was recorded: the container did not start (see the error)."
    return f"No initialization was recorded ({kind or 'start kind unknown'})."


def error_head(error: str) -> str | None:
    """The first line of a long or several-line error, shortened; None for a short one."""
    first = error.strip().splitlines()[0] if error.strip() else ""
    if len(error) <= ERROR_HEAD_CHARS and "\n" not in error.strip():
        return None
    return first if len(first) <= ERROR_HEAD_CHARS else first[:ERROR_HEAD_CHARS - 1] + "…"


def as_json(value: object) -> str:
    """Indented JSON, non-ASCII characters and quotes as they are (the page escapes HTML)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


async def activation_page(request: web.Request) -> web.Response:
    """The record, its parameters, the timeline and init breakdown, the result, the logs."""
    row = await _activation(request)
    segments, total = init_segments(row)
    result = row.response.get("result")
    error = result.get("error") if isinstance(result, dict) else None
    error = error if isinstance(error, str) else None
    parameters = annotation(row, "parameters")
    return await render_page(request, ActivationPage(
        summary=activation_row(row), usage=usage_of(row),
        timings={key: annotation(row, key) for key in ("waitTime", "initTime", "batchSize")},
        parameters_json=as_json(parameters) if isinstance(parameters, dict) else None,
        phases=timeline(row, segments), init_segments=segments, init_total_ms=total,
        init_note=init_note(row), error=error, error_head=error_head(error) if error else None,
        result_json=as_json(result), logs=[str(line) for line in row.logs],
        record_json=as_json(activation_json(row))))


async def activation_summary(request: web.Request) -> web.Response:
    """What the playground shows after a stream: tokens, TTFT, start kind, cost."""
    row = await _activation(request)
    summary = activation_row(row)
    result = row.response.get("result")
    # The finished text, stop sequences cut: streamed deltas may run past a stop string.
    text = result.get("text") if isinstance(result, dict) else None
    return web.json_response({**usage_of(row), "ttft_ms": summary.ttft_ms, "text": text,
                              "start_kind": summary.start_kind, "cost": summary.cost,
                              "duration_ms": summary.duration_ms, "status": summary.status,
                              "url": f"/console/activations/{row.activation_id}"})
