"""The REST API's routes in one table: the app registers them, the OpenAPI document lists them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from lorafaas.controller.api import (
    actions,
    activations,
    backbones,
    metrics,
    namespaces,
    openai,
    packages,
    usage,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NAMESPACE = "/api/v1/namespaces/{namespace}"
ERRORS = (400, 401, 403, 404, 405, 429, 500)


@dataclass(frozen=True)
class Route:
    """One endpoint: what it does, its query parameters and the statuses it answers."""

    method: str
    path: str
    handler: Handler
    summary: str
    query: tuple[str, ...] = ()
    body: str | None = None  # what the JSON body holds, when it takes one
    schema: str | None = None  # the body's schema, a key of `schemas.BODIES`
    statuses: tuple[int, ...] = (200,)
    tags: tuple[str, ...] = field(default=())
    response: str | None = None  # the schema (lorafaas.controller.openapi) of a 200's body


async def api_info(request: web.Request) -> web.Response:
    """What this API is (as OpenWhisk's `GET /api/v1`)."""
    from lorafaas import __version__

    return web.json_response({"description": "LoRAFaaS: OpenWhisk-compatible API for LoRA "
                                             "functions", "api_version": "1.0.0",
                              "build": __version__})


def api_routes() -> list[Route]:
    """Every route of the REST API except the OpenAPI document itself."""
    return [
        Route("GET", "/api/v1", api_info, "API information", tags=("info",)),
        Route("GET", "/api/v1/namespaces", namespaces.list_namespaces,
              "Namespaces of the caller's key", tags=("namespaces",)),
        Route("GET", f"{NAMESPACE}/limits", namespaces.get_limits,
              "Throttles of a namespace", tags=("namespaces",)),
        Route("GET", "/api/v1/backbones", backbones.list_backbones,
              "The backbones this deployment serves, the default first (an action's "
              "`backbone` annotation names one)", tags=("backbones",), response="Backbones"),
        Route("GET", f"{NAMESPACE}/actions", actions.list_actions, "List actions",
              query=("limit", "skip"), tags=("actions",)),
        # Before actions/{package}/{name}: the first route that matches serves (aiohttp).
        Route("GET", f"{NAMESPACE}/actions/{{name}}/versions", actions.list_action_versions,
              "The action's kept versions, newest first (LORAFAAS_ACTION_HISTORY)",
              tags=("actions",)),
        *action_routes(f"{NAMESPACE}/actions/{{name}}", ""),
        *action_routes(f"{NAMESPACE}/actions/{{package}}/{{name}}", " in a package"),
        *package_routes(),
        Route("GET", f"{NAMESPACE}/activations", activations.list_activation_records,
              "List activations", query=("name", "limit", "skip", "since", "upto", "docs"),
              tags=("activations",)),
        Route("GET", f"{NAMESPACE}/activations/{{id}}", activations.get_activation_record,
              "Get an activation record", tags=("activations",)),
        Route("GET", f"{NAMESPACE}/activations/{{id}}/logs", activations.get_activation_logs,
              "Get an activation's logs", tags=("activations",)),
        Route("GET", f"{NAMESPACE}/activations/{{id}}/result",
              activations.get_activation_result, "Get an activation's response",
              tags=("activations",)),
        *usage_routes(),
        *openai_routes(),
        Route("GET", "/metrics", metrics.prometheus_metrics,
              "The invoker's metrics in Prometheus text format 0.0.4: queue length, batches "
              "running (M), batch sizes, SLO attainment per function, containers by state "
              "(keys of LORAFAAS_ADMIN_NAMESPACES)", tags=("metrics",)),
    ]


def action_routes(path: str, where: str) -> list[Route]:
    """PUT, GET, DELETE and POST (invoke) of an action at `path`."""
    return [
        Route("PUT", path, actions.put_action,
              f"Create or update an action of kind lora{where}", query=("overwrite", "backbone"),
              body="exec {kind: lora, binary: true, code: base64 zip}, parameters, "
                   "annotations, limits (or, as application/zip, the zip itself, with "
                   "?backbone=)", schema="Action",
              statuses=(200, 409, 413, 429), tags=("actions",)),
        Route("GET", path, actions.get_action, f"Get an action{where}",
              query=("code",), tags=("actions",)),
        Route("DELETE", path, actions.delete_action, f"Delete an action{where}",
              tags=("actions",)),
        Route("POST", path, actions.invoke_action, f"Invoke an action{where}",
              query=("blocking", "result", "timeout"), body="the invocation's parameters",
              schema="Invocation",
              statuses=(200, 202, 408, 429, 502), tags=("actions",)),
    ]


def package_routes() -> list[Route]:
    """Packages and bindings, as OpenWhisk serves them."""
    path = f"{NAMESPACE}/packages/{{name}}"
    return [
        Route("GET", f"{NAMESPACE}/packages", packages.list_packages,
              "List packages and bindings", query=("limit", "skip"), tags=("packages",)),
        Route("PUT", path, packages.put_package,
              "Create or update a package, or a binding to a package of this namespace or a "
              "published one of another", query=("overwrite",),
              body="parameters, annotations, publish, binding {namespace, name}",
              schema="Package", statuses=(200, 409), tags=("packages",)),
        Route("GET", path, packages.get_package,
              "Get a package with its actions (a binding: the bound package's, with the "
              "binding's parameters over its own)", tags=("packages",)),
        Route("DELETE", path, packages.delete_package,
              "Delete a binding, or a package that holds no actions", statuses=(200, 409),
              tags=("packages",)),
    ]


def usage_routes() -> list[Route]:
    """Usage and cost reports (`format=csv` for CSV)."""
    query = ("since", "upto", "groupBy", "format")
    return [
        Route("GET", f"{NAMESPACE}/usage", usage.namespace_usage,
              "Usage and cost of a namespace: totals, groups (action, day, hour), "
              "activations, overhead, dedicated-deployment comparison", query=query,
              tags=("usage",)),
        Route("GET", "/api/v1/admin/usage", usage.admin_usage,
              "Usage and cost of every namespace (keys of LORAFAAS_ADMIN_NAMESPACES)",
              query=("namespace", *query), tags=("usage",)),
    ]


def openai_routes() -> list[Route]:
    """The OpenAI-compatible endpoints (Bearer `uuid:key`, or Basic); errors in OpenAI's
    shape `{"error": {"message", "type", "param", "code"}}`."""
    refused = "; any other parameter not at its neutral value is refused (400, naming it)"
    return [
        Route("GET", "/v1/models", openai.list_models, "The caller's lora actions as models",
              tags=("openai",)),
        Route("POST", "/v1/completions", openai.completions,
              "OpenAI completions (stream: server-sent events)",
              body="model, prompt, max_tokens, temperature, top_p, seed, stop, stream, "
                   "stream_options" + refused,
              schema="Completion",
              statuses=(200, 429, 502), tags=("openai",)),
        Route("POST", "/v1/chat/completions", openai.chat_completions,
              "OpenAI chat completions (stream: server-sent events)",
              body="model, messages, max_tokens (max_completion_tokens), temperature, top_p, "
                   "seed, stop, stream, stream_options" + refused,
              schema="ChatCompletion",
              statuses=(200, 429, 502), tags=("openai",)),
    ]
