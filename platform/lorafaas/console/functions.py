"""Function pages: the list, a function's page with its playground, and invoking from it."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from lorafaas.console import timeline
from lorafaas.console.code_runs import component_links, form_parameters, run_action, web_url
from lorafaas.console.data import activations_since, charges_since, containers, function_state
from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import (
    FunctionPage,
    FunctionRow,
    FunctionsPage,
    LimitField,
    TimelineRow,
)
from lorafaas.console.render import render_page
from lorafaas.console.snippets import call_snippets, code_snippets
from lorafaas.console.stats import (
    activation_row,
    cost_of,
    latency_percentiles,
    start_of_today_ms,
    when,
)
from lorafaas.controller.api import openai
from lorafaas.controller.appkeys import (
    actions_key,
    backbones_key,
    invocations_key,
    sessions_key,
    settings_key,
)
from lorafaas.controller.function_refs import action_backbone, code_digest
from lorafaas.controller.openai_protocol import check_max_tokens, parse_openai_request
from lorafaas.controller.protocol import (
    DEFAULT_MAX_TOKENS,
    LORA_KIND,
    ActionBody,
    LimitRange,
    limit_ranges,
    parse_limits,
)
from lorafaas.errors import BadRequest
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry.models import Action, Activation

RECENT = 20
PLAYGROUND_FIELDS = {"max_tokens": int, "temperature": float, "top_p": float, "seed": int}
# The limits the function page edits, in the order shown, with their labels.
EDITABLE_LIMITS = {"memory": "memory", "timeout": "timeout", "max_tokens": "max tokens",
                   "slo_ttft_ms": "TTFT objective"}


async def list_functions(request: web.Request) -> web.Response:
    """The namespace's functions with instance state and today's requests and cost."""
    identity = request[console_identity_key]
    async with request.app[sessions_key]() as session:
        # The default package's: those of packages are on the packages page.
        actions = await action_rows.list_actions(session, identity.namespace_id, 200, 0,
                                                 package="")
    today = await activations_since(request, identity, start_of_today_ms())
    requests: dict[str, int] = defaultdict(int)
    cost: dict[str, float] = defaultdict(float)
    for row in today:
        requests[row.name] += 1
        cost[row.name] += cost_of(row) or 0.0
    views = containers(request)
    rows = []
    for action in actions:
        state, instances = function_state(views, f"{identity.namespace}/{action.name}")
        last = await activations_since(request, identity, 0, action.name, limit=1)
        lora = action.exec_kind == LORA_KIND
        rows.append(FunctionRow(action.name, action.version, state, instances,
                                when(last[0].start_ms) if last else None,
                                requests[action.name], cost[action.name],
                                backbone_name(request, action) if lora else "",
                                action.exec_kind, len(action.components or ())))
    return await render_page(request, FunctionsPage(rows))


async def function_page(request: web.Request) -> web.Response:
    """A function: how to call it, its limits, playground, activations, latency percentiles."""
    action = await request.app[actions_key].get(request[console_identity_key],
                                                page_function(request))
    return await render_page(request, await _function_page(request, action))


async def _function_page(request: web.Request, action: Action, error: str | None = None,
                         **run: Any) -> FunctionPage:
    """The page's context; `run`: the JSON form's fields (parameters_json, run, run_error)."""
    identity = request[console_identity_key]
    rows = await activations_since(request, identity, 0, action.name, limit=500)
    window = timeline.window_of(request.query.get("window"))
    chart = await _timeline(request, action.name, window)
    annotations = {a["key"]: a["value"] for a in action.annotations}
    limits = dict(action.limits)
    endpoint = f"{request.scheme}://{request.host}"
    max_tokens = int(limits.get("max_tokens", DEFAULT_MAX_TOKENS))
    return FunctionPage(
        name=action.name, version=action.version, backbone=backbone_name(request, action),
        adapter=dict(annotations.get("adapter") or {}), limits=limits,
        limit_fields=limit_fields(limits, _ranges(request)), max_tokens_limit=max_tokens,
        snippets=call_snippets(endpoint, identity.namespace, action.name, max_tokens)
        if action.exec_kind == LORA_KIND else code_snippets(endpoint, action.name),
        endpoint=endpoint, activations=[activation_row(r) for r in rows[:RECENT]],
        # A request refused before it ran (no container leased) has no latency to count.
        latencies=latency_percentiles([r for r in rows if activation_row(r).start_kind]),
        window=window.key, windows=[(w.key, w.label) for w in timeline.WINDOWS.values()],
        chart_data=chart.chart_data(), timeline_rows=timeline_rows(chart), error=error,
        components=component_links(action.components, identity.namespace),
        kind=action.exec_kind, web_url=web_url(endpoint, identity.namespace, action), **run)


async def _timeline(request: web.Request, name: str, window: timeline.Window
                    ) -> timeline.Timeline:
    identity = request[console_identity_key]
    now_ms = int(time.time() * 1000)
    since = now_ms - window.span_ms
    rows = await activations_since(request, identity, since, name)
    charges = await charges_since(request, identity, name, since)
    return timeline.bucket(map(_timeline_request, rows), charges, window, now_ms)


def _timeline_request(row: Activation) -> timeline.Request:
    summary = activation_row(row)
    return timeline.Request(row.start_ms, summary.ttft_ms, summary.start_kind or None)


def timeline_rows(chart: timeline.Timeline) -> list[TimelineRow]:
    """The buckets with any request or cost, newest first, for the table under the charts."""
    def start(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")

    return [TimelineRow(start(chart.starts_ms[i]), chart.requests[i], chart.ttft_p50[i],
                        chart.ttft_p99[i], chart.cold_share[i], chart.cost_per_hour[i])
            for i in reversed(chart.busy_buckets())]


def _ranges(request: web.Request) -> dict[str, LimitRange]:
    settings = request.app[settings_key]
    return limit_ranges(settings.action_timeout_ms, settings.container_memory_mb,
                        settings.slo_ttft_ms)


def limit_fields(limits: dict[str, Any], ranges: dict[str, LimitRange]) -> list[LimitField]:
    """The editable limits with their current values and the API's ranges."""
    return [LimitField(name, label, int(limits.get(name, ranges[name].default)),
                       ranges[name].low, ranges[name].high, ranges[name].unit)
            for name, label in EDITABLE_LIMITS.items()]


def edited_limits(form: Any, current: dict[str, Any]) -> dict[str, Any]:
    """The function's limits with the form's edits; a blank or non-integer field is a 400."""
    limits = dict(current)
    for name, label in EDITABLE_LIMITS.items():
        raw = str(form.get(name, "") or "").strip()
        try:
            limits[name] = int(raw)
        except ValueError as error:
            raise BadRequest(f"{label} must be a whole number") from error
    return limits


async def limits_submit(request: web.Request) -> web.Response:
    """Store a new version with edited limits (same adapter), through `ActionService.put`."""
    identity = request[console_identity_key]
    service = request.app[actions_key]
    action: Action = await service.get(identity, page_function(request))
    try:
        if action.exec_kind != LORA_KIND:
            raise BadRequest(f"A {action.exec_kind} action's limits are set through the API "
                             "(PUT with ?overwrite=true) or `lorafaas action update`.")
        limits = parse_limits(edited_limits(await request.post(), action.limits),
                              _ranges(request))
    except BadRequest as error:
        page = await _function_page(request, action, error.message)
        return await render_page(request, page, status=400)
    with service.store.staging() as folder:
        code = folder / "adapter.zip"
        await asyncio.to_thread(shutil.copyfile, service.store.zip_path(code_digest(action)),
                                code)
        body = ActionBody(code=code, parameters=list(action.parameters),
                          annotations=list(action.annotations), limits=limits,
                          publish=action.publish)
        await service.put(identity, page_function(request), body, overwrite=True)
    # Running containers were sized by the old limits.
    await request.app[invocations_key].invoker.retire(page_function(request))
    raise web.HTTPSeeOther(f"/console/functions/{action.name}")


async def run_submit(request: web.Request) -> web.Response:
    """The JSON form of a code action or sequence: a blocking run, its result on the page."""
    action: Action = await request.app[actions_key].get(request[console_identity_key],
                                                        page_function(request))
    text = str((await request.post()).get("parameters", "") or "")
    try:
        run = await run_action(request, action, form_parameters(text))
    except BadRequest as error:
        page = await _function_page(request, action, parameters_json=text,
                                    run_error=error.message)
        return await render_page(request, page, status=400)
    page = await _function_page(request, action, parameters_json=text, run=run)
    return await render_page(request, page)


async def delete_submit(request: web.Request) -> web.Response:
    """Delete the function once its name is typed to confirm; its containers go too."""
    identity = request[console_identity_key]
    name = request.match_info["name"]
    action = await request.app[actions_key].get(identity, page_function(request))
    if str((await request.post()).get("confirm", "")).strip() != name:
        page = await _function_page(request, action,
                                    f"Type the name {name!r} to confirm deleting it.")
        return await render_page(request, page, status=400)
    await request.app[actions_key].delete(identity, page_function(request))
    await request.app[invocations_key].invoker.retire(page_function(request))
    raise web.HTTPSeeOther("/console/functions")


def page_function(request: web.Request) -> QualifiedName:
    """The function a console path names: an action of the default package, for now."""
    identity = request[console_identity_key]
    return QualifiedName.of(identity.namespace, None, request.match_info["name"])


def backbone_name(request: web.Request, action: Action) -> str:
    """The backbone a function runs on: its annotation's, else the deployment's default."""
    return action_backbone(action) or request.app[backbones_key].default


def playground_body(form: Any) -> tuple[bool, dict[str, Any]]:
    """Whether the playground asks for a chat, and its OpenAI-shaped body (without `model`):
    a prompt, or the system prompt, earlier turns and the new message; blank fields are
    left out; stop sequences one per line."""
    chat = str(form.get("mode", "")) == "chat"
    body: dict[str, Any] = {}
    if chat:
        message = str(form.get("message", "")).strip()
        if not message:
            raise BadRequest("Write a message first.")
        system = str(form.get("system", "") or "").strip()
        turns = form.get("turns") or []
        if not isinstance(turns, list):
            raise BadRequest("The playground sent malformed turns.")
        body["messages"] = ([{"role": "system", "content": system}] if system else []) \
            + list(turns) + [{"role": "user", "content": message}]
    else:
        prompt = str(form.get("prompt", "")).strip()
        if not prompt:
            raise BadRequest("Write a prompt first.")
        body["prompt"] = prompt
    for name, kind in PLAYGROUND_FIELDS.items():
        raw = str(form.get(name, "") or "").strip()
        if raw:
            try:
                body[name] = kind(raw)
            except ValueError as error:
                raise BadRequest(f"{name.replace('_', ' ')} must be a number") from error
    stops = [line for line in str(form.get("stop", "") or "").splitlines() if line]
    if stops:
        body["stop"] = stops
    return chat, body


async def invoke_submit(request: web.Request) -> web.Response:
    """The playground without JavaScript: a blocking invoke, then the activation's page."""
    identity = request[console_identity_key]
    action: Action = await request.app[actions_key].get(identity, page_function(request))
    chat, body = playground_body(await request.post())
    parsed = parse_openai_request({**body, "model": action.name}, chat)
    check_max_tokens(parsed, int(action.limits.get("max_tokens", DEFAULT_MAX_TOKENS)))
    invocation = await request.app[invocations_key].start(identity, action, parsed.parameters)
    row = await invocation.task
    raise web.HTTPSeeOther(f"/console/activations/{row.activation_id}")


async def stream_completion(request: web.Request) -> web.StreamResponse:
    """The playground's stream: `/v1/completions` or `/v1/chat/completions` with the
    session's identity (SSE)."""
    identity = request[console_identity_key]
    try:
        received = await request.json()
        chat, body = playground_body(received if isinstance(received, dict) else {})
    except json.JSONDecodeError as error:
        raise BadRequest("The playground sent a malformed request.") from error
    name = request.match_info["name"]
    await request.app[actions_key].get(identity, page_function(request))  # 404 first
    return await openai.stream_completion(request, identity,
                                          {**body, "model": name, "stream": True}, chat=chat)
