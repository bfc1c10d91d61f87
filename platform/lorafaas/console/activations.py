"""An activation's page (record, init breakdown, logs) and its summary for the playground."""

from __future__ import annotations

import json

from aiohttp import web

from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import ActivationPage, InitSegment
from lorafaas.console.render import render_page
from lorafaas.console.stats import activation_row, annotation, usage_of
from lorafaas.controller.appkeys import sessions_key
from lorafaas.registry.activations import activation_json, get_activation
from lorafaas.registry.models import Activation


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


async def activation_page(request: web.Request) -> web.Response:
    """The record, the init breakdown as a bar, the logs."""
    row = await _activation(request)
    segments, total = init_segments(row)
    result = row.response.get("result")
    return await render_page(request, ActivationPage(
        summary=activation_row(row), usage=usage_of(row), init_segments=segments,
        init_total_ms=total, result=result, logs=[str(line) for line in row.logs],
        record_json=json.dumps(activation_json(row), indent=2, sort_keys=True)))


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
