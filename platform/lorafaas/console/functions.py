"""Function pages: the list, a function's page with its playground, and invoking from it."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from aiohttp import web

from lorafaas.console.data import activations_since, containers, function_state
from lorafaas.console.keys import console_identity_key
from lorafaas.console.pages import FunctionPage, FunctionRow, FunctionsPage
from lorafaas.console.render import render_page
from lorafaas.console.stats import (
    activation_row,
    cost_of,
    latency_percentiles,
    start_of_today_ms,
    when,
)
from lorafaas.controller.api import openai
from lorafaas.controller.appkeys import actions_key, backbones_key, invocations_key, sessions_key
from lorafaas.controller.prefill import action_backbone
from lorafaas.errors import BadRequest
from lorafaas.registry import actions as action_rows
from lorafaas.registry.models import Action

RECENT = 20
PLAYGROUND_FIELDS = {"max_tokens": int, "temperature": float, "top_p": float, "seed": int}


async def list_functions(request: web.Request) -> web.Response:
    """The namespace's functions with instance state and today's requests and cost."""
    identity = request[console_identity_key]
    async with request.app[sessions_key]() as session:
        actions = await action_rows.list_actions(session, identity.namespace_id, 200, 0)
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
        rows.append(FunctionRow(action.name, action.version, state, instances,
                                when(last[0].start_ms) if last else None,
                                requests[action.name], cost[action.name],
                                backbone_name(request, action)))
    return await render_page(request, FunctionsPage(rows))


async def function_page(request: web.Request) -> web.Response:
    """A function: playground, recent activations, latency percentiles."""
    identity = request[console_identity_key]
    action = await request.app[actions_key].get(identity, request.match_info["name"])
    rows = await activations_since(request, identity, 0, action.name, limit=500)
    annotations = {a["key"]: a["value"] for a in action.annotations}
    return await render_page(request, FunctionPage(
        name=action.name, version=action.version, backbone=backbone_name(request, action),
        adapter=dict(annotations.get("adapter") or {}), limits=dict(action.limits),
        activations=[activation_row(r) for r in rows[:RECENT]],
        latencies=latency_percentiles(rows)))


def backbone_name(request: web.Request, action: Action) -> str:
    """The backbone a function runs on: its annotation's, else the deployment's default."""
    return action_backbone(action) or request.app[backbones_key].default


def playground_parameters(form: Any) -> dict[str, Any]:
    """The invocation's parameters from the playground form; blank fields are left out."""
    prompt = str(form.get("prompt", "")).strip()
    if not prompt:
        raise BadRequest("Write a prompt first.")
    parameters: dict[str, Any] = {"prompt": prompt}
    for name, kind in PLAYGROUND_FIELDS.items():
        raw = str(form.get(name, "") or "").strip()
        if raw:
            try:
                parameters[name] = kind(raw)
            except ValueError as error:
                raise BadRequest(f"{name.replace('_', ' ')} must be a number") from error
    return parameters


async def invoke_submit(request: web.Request) -> web.Response:
    """The playground without JavaScript: a blocking invoke, then the activation's page."""
    identity = request[console_identity_key]
    action: Action = await request.app[actions_key].get(identity, request.match_info["name"])
    parameters = playground_parameters(await request.post())
    invocation = await request.app[invocations_key].start(identity, action, parameters)
    row = await invocation.task
    raise web.HTTPSeeOther(f"/console/activations/{row.activation_id}")


async def stream_completion(request: web.Request) -> web.StreamResponse:
    """The playground's stream: `/v1/completions` with the session's identity (SSE)."""
    identity = request[console_identity_key]
    try:
        body = await request.json()
        parameters = playground_parameters(body if isinstance(body, dict) else {})
    except json.JSONDecodeError as error:
        raise BadRequest("The playground sent a malformed request.") from error
    name = request.match_info["name"]
    await request.app[actions_key].get(identity, name)  # 404 before any stream starts
    return await openai.stream_completion(request, identity,
                                          {**parameters, "model": name, "stream": True})
