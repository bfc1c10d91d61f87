"""JSON Schemas of the REST API's parameters and bodies, for the OpenAPI document.

They state the bounds the handlers check (`api.params`, `protocol.parse_action_body`,
`invoke_params`), so that a client, or a fuzzer, can build requests that are accepted.
"""

from __future__ import annotations

from typing import Any

from lorafaas.billing.reports import GROUPINGS
from lorafaas.controller.api.params import (
    INT64_MAX,
    MAX_EPOCH_MS,
    MAX_LIST_LIMIT,
    MAX_NAME_LENGTH,
)
from lorafaas.controller.invoke_params import SEED_RANGE
from lorafaas.controller.protocol import CODE_KINDS, LORA_KIND, SEQUENCE_KIND, limit_ranges
from lorafaas.controller.sequence_actions import SEQUENCE_LIMIT

Schema = dict[str, Any]

_BOOLEAN: Schema = {"type": "boolean"}
_EPOCH_MS: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS,
                     "description": "milliseconds since the epoch"}

# Query parameters by name: a name means the same thing on every route that takes it.
QUERY: dict[str, Schema] = {
    "limit": {"type": "integer", "minimum": 0, "maximum": MAX_LIST_LIMIT,
              "description": "at most this many (0: the maximum)"},
    "skip": {"type": "integer", "minimum": 0, "maximum": INT64_MAX},
    "since": _EPOCH_MS,
    "upto": _EPOCH_MS,
    "name": {"type": "string", "description": "only the activations of this action: "
                                              "`action`, or `pkg/action` in a package"},
    "docs": _BOOLEAN,
    "count": {**_BOOLEAN, "description": "only how many: {\"actions\": N}, "
                                         "{\"activations\": N}, ... (not with docs)"},
    "overwrite": _BOOLEAN,
    "code": _BOOLEAN,
    "blocking": _BOOLEAN,
    "result": _BOOLEAN,
    "timeout": {"type": "integer", "minimum": 1, "maximum": 600_000,
                "description": "how long a blocking invocation waits (ms) before a 202"},
    "groupBy": {"type": "string", "enum": list(GROUPINGS)},
    "format": {"type": "string", "enum": ["json", "csv"]},
    "namespace": {"type": "string", "description": "only this namespace"},
    "backbone": {"type": "string", "maxLength": MAX_NAME_LENGTH,
                 "description": "with an application/zip body: the backbone the adapter is for "
                                "(default: the deployment's first)"},
}

# Path parameters by name.
# OpenWhisk's entity name (`lorafaas.names`), ASCII as Java's \w.
_ENTITY_NAME: Schema = {"type": "string", "maxLength": MAX_NAME_LENGTH,
                        "pattern": r"^(?:[A-Za-z0-9_]|[A-Za-z0-9_][A-Za-z0-9_@ .-]*[A-Za-z0-9_@.-])$"}
PATH: dict[str, Schema] = {
    "namespace": {"type": "string", "description": "the key's namespace, or `_`"},
    "name": _ENTITY_NAME,
    "package": {**_ENTITY_NAME, "description": "the action's package (a web action's: "
                                               "`default` for none)"},
    "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "feed": {"type": "string", "enum": ["alarm", "interval"]},
    "action": {"type": "string", "description": "the web action's name and extension, and "
                                               "optionally a projection path after it"},
}

_KEY_VALUES: Schema = {"type": "array", "items": {
    "type": "object", "required": ["key", "value"],
    "properties": {"key": {"type": "string"}, "value": {}}}}


def _limits() -> Schema:
    ranges = limit_ranges(60_000, 2048)
    return {"type": "object", "additionalProperties": False, "properties": {
        name: {"type": "integer", "minimum": r.low, "maximum": r.high, "description": r.unit}
        for name, r in ranges.items()}}


_MAX_TOKENS: Schema = {"type": "integer", "minimum": 1,
                       "maximum": limit_ranges(1, 1)["max_tokens"].high,
                       "description": "at most the action's max_tokens limit"}
_SAMPLING: dict[str, Schema] = {
    "max_tokens": _MAX_TOKENS,
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "seed": {"type": "integer", "minimum": SEED_RANGE[0], "maximum": SEED_RANGE[1]},
    "stop": {"oneOf": [{"type": "string"},
                       {"type": "array", "items": {"type": "string", "minLength": 1}}]},
    "stream": _BOOLEAN,
}
_MESSAGES: Schema = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["content"],
    "properties": {"role": {"type": "string"}, "content": {"type": "string"}}}}

# OpenAI's chat messages: a role and a text content (tool and function turns are refused).
_CHAT_MESSAGES: Schema = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["role", "content"], "additionalProperties": False,
    "properties": {"role": {"type": "string",
                            "enum": ["system", "developer", "user", "assistant"]},
                   "content": {"type": "string"}}}}
# OpenAI's parameters the platform honours; any other is refused with a 400 naming it
# (openai_params), `max_completion_tokens` (an alias of max_tokens) included here.
_OPENAI_SAMPLING: dict[str, Schema] = {
    **_SAMPLING,
    "stop": {"oneOf": [{"type": "string", "minLength": 1},
                       {"type": "array", "maxItems": 4,
                        "items": {"type": "string", "minLength": 1}}]},
    "stream_options": {"type": "object", "additionalProperties": False,
                       "properties": {"include_usage": _BOOLEAN}},
}

_MODEL = ("the action: `action`, `package/action`, `/namespace/[package/]action` "
          "(OpenWhisk's forms), or the `namespace/[package/]action` /v1/models lists")
_QUALIFIED_NAME: Schema = {"type": "string", "pattern": r"^/?(?:[\w][\w@ .-]*/){0,2}\w[\w@.-]*$",
                           "description": "NAME, PACKAGE/NAME, /NAMESPACE/NAME or "
                                          "/NAMESPACE/PACKAGE/NAME (`_`: the key's)"}
_SEMVER: Schema = {"type": "string", "pattern": r"^\d{1,9}\.\d{1,9}\.\d{1,9}$"}

BODIES: dict[str, Schema] = {
    "Trigger": {"type": "object", "properties": {
        "parameters": _KEY_VALUES, "annotations": _KEY_VALUES, "limits": {"type": "object"},
        "version": _SEMVER, "publish": _BOOLEAN}},
    "TriggerPayload": {"type": "object", "description": "merged over the trigger's "
                                                        "parameters: for lora actions, "
                                                        "their invocation parameters",
                       "properties": {"prompt": {"type": "string"}, **_SAMPLING}},
    "Rule": {"type": "object", "required": ["trigger", "action"], "properties": {
        "trigger": _QUALIFIED_NAME, "action": _QUALIFIED_NAME, "annotations": _KEY_VALUES,
        "version": _SEMVER, "publish": _BOOLEAN}},
    "FeedInvocation": {"type": "object", "required": ["lifecycleEvent", "triggerName"],
                       "properties": {
                           "lifecycleEvent": {"type": "string",
                                              "enum": ["CREATE", "READ", "UPDATE", "DELETE"]},
                           "triggerName": _QUALIFIED_NAME,
                           "authKey": {"type": "string", "description": "ignored: the "
                                       "alarm fires as the caller"},
                           "cron": {"type": "string"}, "minutes": {"type": "integer",
                                                                   "minimum": 1},
                           "timezone": {"type": "string"}, "trigger_payload": {},
                           "startDate": {"type": "string", "format": "date-time"},
                           "stopDate": {"type": "string", "format": "date-time"}}},
    "RuleStatus": {"type": "object", "required": ["status"], "properties": {
        "status": {"type": "string", "enum": ["active", "inactive"]}}},
    "Action": {"type": "object", "description": "`exec` is required to create; an update "
               "(?overwrite=true) keeps each field it leaves out, and each limit it does not "
               "name, as OpenWhisk merges", "properties": {
        "exec": {"oneOf": [
            {"type": "object", "required": ["kind", "code"], "properties": {
                "kind": {"type": "string", "enum": [LORA_KIND],
                         "description": "read trimmed and in any case"},
                "binary": {"type": "boolean",
                           "description": "ignored, as by OpenWhisk: base64 code is binary"},
                "code": {"type": "string", "format": "byte",
                         "description": "base64 of a zip: adapter_config.json, "
                                        "adapter_model.safetensors, optionally __main__.py "
                                        "with main(args, llm), `llm(prompt, **sampling)` "
                                        "generating with this adapter"}}},
            {"type": "object", "required": ["kind", "code"],
             "description": "A code action (OpenWhisk's Python action): `limits` takes "
                            "timeout, memory, concurrency and logs only.", "properties": {
                 "kind": {"type": "string", "enum": sorted(CODE_KINDS)},
                 "binary": {"type": "boolean", "description": "ignored: base64 code is a zip"},
                 "code": {"type": "string", "description": "the source text, or the base64 "
                          "of a zip with __main__.py at its top"},
                 "main": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                          "description": "the entry point (default: main)"}}},
            {"type": "object", "required": ["kind", "components"],
             "description": "A sequence: each component's result is the next one's "
                            "parameters (a lora result's `text` becomes a following lora "
                            "component's `prompt`); `limits` as for kind lora.",
             "properties": {
                 "kind": {"type": "string", "enum": [SEQUENCE_KIND]},
                 "components": {"type": "array", "minItems": 1, "maxItems": SEQUENCE_LIMIT,
                                "items": _QUALIFIED_NAME,
                                "description": "actions of this namespace (`/_/` for the "
                                               "caller's), run in order"}}}]},
        "parameters": _KEY_VALUES, "annotations": _KEY_VALUES, "limits": _limits(),
        "publish": _BOOLEAN}},
    "Package": {"type": "object", "additionalProperties": False, "properties": {
        "parameters": _KEY_VALUES, "annotations": _KEY_VALUES, "publish": _BOOLEAN,
        "binding": {"type": "object", "additionalProperties": False,
                    "required": ["namespace", "name"],
                    "description": "the bound package (`_`: this namespace)",
                    "properties": {"namespace": {"type": "string"},
                                   "name": _ENTITY_NAME}}}},
    "Invocation": {"type": "object", "description": "A lora action's default handler's "
                   "parameters (`prompt` or `messages`); a python:3 action, a lora action "
                   "with its own handler, or a sequence (its first component's) takes any "
                   "object.",
                   "anyOf": [{"required": ["prompt"]}, {"required": ["messages"]}],
                   "properties": {"prompt": {"type": "string"}, "messages": _MESSAGES,
                                  **_SAMPLING}},
    "WebArguments": {"type": "object", "description": "Each field is a parameter of the web "
                     "action (an `__ow_` field, or a protected one, is refused)",
                     "properties": {"name": {"type": "string",
                                             "description": "an example parameter"}}},
    "Completion": {"type": "object", "required": ["model", "prompt"],
                   "additionalProperties": False, "properties": {
                       "model": {"type": "string",
                                 "description": _MODEL},
                       "prompt": {"type": "string"}, **_OPENAI_SAMPLING}},
    "ChatCompletion": {"type": "object", "required": ["model", "messages"],
                       "additionalProperties": False,
                       "description": "`max_completion_tokens` is taken as an alias of "
                                      "`max_tokens`",
                       "properties": {
                           "model": {"type": "string",
                                     "description": _MODEL},
                           "messages": _CHAT_MESSAGES, **_OPENAI_SAMPLING}},
}
