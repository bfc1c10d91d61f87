"""The REST API's routes in one table: the app registers them, the OpenAPI document lists them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web as aiohttp_web

from lorafaas.controller.api import (
    actions,
    activations,
    backbones,
    feeds,
    metrics,
    namespaces,
    openai,
    packages,
    rules,
    triggers,
    usage,
    web,
)
from lorafaas.controller.appkeys import settings_key
from lorafaas.controller.protocol import LORA_KIND, limit_ranges

Handler = Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]]
NAMESPACE = "/api/v1/namespaces/{namespace}"
ERRORS = (400, 401, 403, 404, 405, 429, 500)
MB = 1024 * 1024
SEQUENCE_LENGTH = 50  # OpenWhisk's default actionSequenceLimit


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
    response: str | None = None  # the schema (lorafaas.controller.openapi) of a 200's body,
    # or its PLAIN_OK for the text `OK`


async def api_info(request: aiohttp_web.Request) -> aiohttp_web.Response:
    """What this API is: OpenWhisk's `GET /api/v1` fields with those of its `GET /`
    (support, api_paths, limits, runtimes)."""
    from lorafaas import __version__

    settings = request.app[settings_key]
    ranges = limit_ranges(settings.action_timeout_ms, settings.container_memory_mb,
                          settings.slo_ttft_ms)
    return aiohttp_web.json_response({
        "description": "LoRAFaaS: OpenWhisk-compatible API for LoRA functions",
        "api_version": "1.0.0", "api_version_path": "v1", "build": __version__,
        "buildno": __version__,
        "swagger_paths": {"ui": "/console", "api-docs": "/api/v1/openapi.json"},
        "support": {"github": "https://github.com/apache/openwhisk/issues"},
        "api_paths": ["/api/v1"],
        "limits": {
            "actions_per_minute": settings.invocations_per_minute,
            "triggers_per_minute": settings.invocations_per_minute,
            "concurrent_actions": settings.concurrent_invocations,
            "sequence_length": SEQUENCE_LENGTH,
            "min_action_duration": ranges["timeout"].low,
            "max_action_duration": ranges["timeout"].high,
            "min_action_memory": ranges["memory"].low * MB,
            "max_action_memory": ranges["memory"].high * MB,
            "min_action_logs": ranges["logs"].low * MB,
            "max_action_logs": ranges["logs"].high * MB},
        "runtimes": {"lora": [{"kind": LORA_KIND, "default": True, "deprecated": False,
                               "attached": {"attachmentName": "codefile",
                                            "attachmentType": "application/zip"}}]}})


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
              query=("limit", "skip", "count"), tags=("actions",), response="Actions"),
        # Before actions/{package}/{name}: the first route that matches serves (aiohttp).
        Route("GET", f"{NAMESPACE}/actions/{{name}}/versions", actions.list_action_versions,
              "The action's kept versions, newest first (LORAFAAS_ACTION_HISTORY)",
              tags=("actions",)),
        *action_routes(f"{NAMESPACE}/actions/{{name}}", ""),
        *action_routes(f"{NAMESPACE}/actions/{{package}}/{{name}}", " in a package"),
        *package_routes(),
        Route("GET", f"{NAMESPACE}/activations", activations.list_activation_records,
              "List activations",
              query=("name", "limit", "skip", "since", "upto", "docs", "count"),
              tags=("activations",), response="Activations"),
        Route("GET", f"{NAMESPACE}/activations/{{id}}", activations.get_activation_record,
              "Get an activation record", tags=("activations",), response="Activation"),
        Route("GET", f"{NAMESPACE}/activations/{{id}}/logs", activations.get_activation_logs,
              "Get an activation's logs", tags=("activations",)),
        Route("GET", f"{NAMESPACE}/activations/{{id}}/result",
              activations.get_activation_result, "Get an activation's response",
              tags=("activations",)),
        *trigger_routes(),
        *rule_routes(),
        *usage_routes(),
        *web_routes(),
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
              f"Create or update an action{where} of kind lora, python:3, or a sequence (an "
              "update merges, as OpenWhisk's)", query=("overwrite", "backbone"),
              body="exec {kind: lora, code: base64 zip}, {kind: python:3, code} or {kind: "
                   "sequence, components: [\"/namespace/[package/]action\", ...]}, "
                   "parameters, annotations, limits, publish (or, as application/zip, the "
                   "zip itself, with ?backbone=)", schema="Action",
              statuses=(200, 409, 413, 429), tags=("actions",), response="Action"),
        Route("GET", path, actions.get_action, f"Get an action{where}",
              query=("code",), tags=("actions",), response="Action"),
        Route("DELETE", path, actions.delete_action, f"Delete an action{where}",
              tags=("actions",), response="Action"),
        Route("POST", path, actions.invoke_action, f"Invoke an action{where}",
              query=("blocking", "result", "timeout"), body="the invocation's parameters",
              schema="Invocation",
              statuses=(200, 202, 429, 502), tags=("actions",)),
    ]


def package_routes() -> list[Route]:
    """Packages and bindings, as OpenWhisk serves them."""
    path = f"{NAMESPACE}/packages/{{name}}"
    return [
        Route("GET", f"{NAMESPACE}/packages", packages.list_packages,
              "List packages and bindings (?count=true: `{\"packages\": N}`)",
              query=("limit", "skip", "count"), tags=("packages",), response="Packages"),
        Route("PUT", path, packages.put_package,
              "Create or update a package, or a binding to a package of this namespace or a "
              "published one of another", query=("overwrite",),
              body="parameters, annotations, publish, binding {namespace, name}",
              schema="Package", statuses=(200, 409), tags=("packages",), response="Package"),
        Route("GET", path, packages.get_package,
              "Get a package with its actions (a binding: the bound package's, with the "
              "binding's parameters over its own)", tags=("packages",), response="Package"),
        Route("DELETE", path, packages.delete_package,
              "Delete a binding, or a package that holds no actions", statuses=(200, 409),
              tags=("packages",), response="Package"),
    ]

def trigger_routes() -> list[Route]:
    """Triggers: CRUD, and POST to fire (an alarm feed through the `feed` annotation)."""
    path = f"{NAMESPACE}/triggers/{{name}}"
    return [
        Route("GET", f"{NAMESPACE}/triggers", triggers.list_triggers,
              "List triggers (?count=true: `{\"triggers\": N}`)",
              query=("limit", "skip", "count"), tags=("triggers",), response="Triggers"),
        Route("PUT", path, triggers.put_trigger,
              "Create or update a trigger; with the annotation feed = "
              "/whisk.system/alarms/alarm (parameters cron, timezone, trigger_payload, "
              "startDate, stopDate) or /whisk.system/alarms/interval (minutes, ...) it fires "
              "on that schedule", query=("overwrite",),
              body="parameters, annotations, limits, version, publish", schema="Trigger",
              statuses=(200, 409), tags=("triggers",), response="Trigger"),
        Route("GET", path, triggers.get_trigger, "Get a trigger", tags=("triggers",),
              response="Trigger"),
        Route("DELETE", path, triggers.delete_trigger,
              "Delete a trigger (its rules stay, inactive)", tags=("triggers",),
              response="Trigger"),
        Route("POST", "/api/v1/namespaces/whisk.system/actions/alarms/{feed}",
              feeds.invoke_feed,
              "The alarms feed action (`wsk trigger create --feed`): lifecycleEvent CREATE, "
              "READ, UPDATE or DELETE of triggerName's alarm, with the feed's parameters",
              query=("blocking", "result"), body="lifecycleEvent, triggerName, and cron "
                                                  "(alarm) or minutes (interval), timezone, "
                                                  "trigger_payload, startDate, stopDate",
              schema="FeedInvocation", statuses=(200, 502), tags=("triggers",)),
        Route("POST", path, triggers.fire_trigger,
              "Fire a trigger: every active rule's action is invoked with the trigger's "
              "parameters merged with the payload", body="the payload",
              schema="TriggerPayload", statuses=(202, 204, 429), tags=("triggers",)),
    ]


def rule_routes() -> list[Route]:
    """Rules: CRUD, and POST to enable or disable."""
    path = f"{NAMESPACE}/rules/{{name}}"
    return [
        Route("GET", f"{NAMESPACE}/rules", rules.list_rules,
              "List rules (?count=true: `{\"rules\": N}`)",
              query=("limit", "skip", "count"), tags=("rules",), response="Rules"),
        Route("PUT", path, rules.put_rule,
              "Create (active) or update a rule of a trigger and an action",
              query=("overwrite",), body="trigger, action (qualified names), annotations, "
                                          "version, publish", schema="Rule",
              statuses=(200, 409), tags=("rules",), response="Rule"),
        Route("GET", path, rules.get_rule, "Get a rule and its status", tags=("rules",),
              response="Rule"),
        Route("DELETE", path, rules.delete_rule, "Delete a rule", tags=("rules",),
              response="Rule"),
        Route("POST", path, rules.set_rule_status, "Enable or disable a rule",
              body="status: active or inactive; answers the text `OK`", schema="RuleStatus",
              tags=("rules",), response="text/plain OK"),
    ]

WEB_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def web_routes() -> list[Route]:
    """Web actions (`web-export: true`), one route per method OpenWhisk serves them by; no
    key unless the action's `require-whisk-auth` asks (the action's own result shapes the
    answer: these statuses are the platform's)."""
    return [Route(method, "/api/v1/web/{namespace}/{package}/{action:.+}", web.web_action,
                  "A web action: `action` is its name, an extension (.json, .http, .text, "
                  ".html, .svg; none: .http) and optionally a path projecting the result "
                  "(`hello.json/response/name`); `package` is `default` for none",
                  body="the action's parameters: a JSON object or form fields (over the "
                       "query's); any other body reaches it as `__ow_body`",
                  schema="WebArguments", statuses=(200, 202, 204), tags=("web",))
            for method in WEB_METHODS]


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
