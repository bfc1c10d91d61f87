"""The client verbs, one function each: call the REST API, return what to print (wsk's words)."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lorafaas import __version__
from lorafaas.client import render
from lorafaas.client.action_exec import exec_field
from lorafaas.client.http import ApiClient, ClientError, api_base_url
from lorafaas.client.output import CommandError, Output, wsk_json
from lorafaas.client.payload import key_value_list, key_values
from lorafaas.client.props import ClientConfig, save_props
from lorafaas.names import InvalidName, QualifiedName

ACTIVATION_ID = re.compile(r"[0-9a-f]{32}")
LIMIT_OPTIONS = ("timeout", "memory", "concurrency", "logs")
POLL_INTERVAL_S = 2.0  # wsk's
WAIT_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Context:
    """What every verb gets: the API client and the resolved settings."""

    api: ApiClient
    config: ClientConfig


@contextmanager
def unable(what: str) -> Iterator[None]:
    """Turn a failed request into wsk's `Unable to <what>: <message> (code <code>)`."""
    try:
        yield
    except ClientError as error:
        raise CommandError(f"Unable to {what}: {error}") from error


def qualified(ctx: Context, text: str) -> QualifiedName:
    """The name `NAME`, `PACKAGE/NAME` (the default namespace), `/NAMESPACE/NAME` or
    `/NAMESPACE/PACKAGE/NAME` gives, as OpenWhisk parses it."""
    try:
        return QualifiedName.parse(text, ctx.config.namespace)
    except InvalidName as error:
        raise CommandError(error.message) from error


# --- actions -------------------------------------------------------------------------------

def action_create(ctx: Context, args: argparse.Namespace) -> Output:
    """`action create NAME ADAPTER [--overwrite]`: a 409 when the action exists, unless
    `--overwrite` replaces it."""
    name = qualified(ctx, args.name)
    body = action_body(args, None, name.namespace)
    try:
        action = ctx.api.put_action(name, body, overwrite=args.overwrite)
    except ClientError as error:
        raise CommandError(f"Unable to create action '{name.relative}': "
                           f"{_create_failure(error)}") from error
    return Output(f"ok: created action {name.relative}", action)


def _create_failure(error: ClientError) -> ClientError:
    if error.status != 409:
        return error
    # The server's hint is in the API's words (?overwrite=true): give the CLI's.
    return ClientError(409, "resource already exists; --overwrite replaces it, 'action "
                            "update' changes only what it is given", error.code)


def action_update(ctx: Context, args: argparse.Namespace) -> Output:
    """`action update NAME [ARTIFACT]`: what is not given is kept; created when absent."""
    name = qualified(ctx, args.name)
    existing = _existing_action(ctx, name)
    body = action_body(args, existing, name.namespace)
    with unable(f"update action '{name.relative}'"):
        action = ctx.api.put_action(name, body, overwrite=True)
    return Output(f"ok: updated action {name.relative}", action)


def _existing_action(ctx: Context, name: QualifiedName) -> dict[str, Any] | None:
    try:
        return ctx.api.get_action(name)
    except ClientError as error:
        if error.status == 404:
            return None
        raise CommandError(f"Unable to get action '{name.relative}': {error}") from error


def action_body(args: argparse.Namespace, existing: dict[str, Any] | None,
                namespace: str = "_") -> dict[str, Any]:
    """The PUT body: the artifact's code (or, with --sequence, the components), and
    parameters, annotations and limits merged onto `existing`; without an artifact an
    update sends no `exec`, and the server keeps the action's."""
    exec_ = exec_field(args, namespace)
    if exec_ is None and existing is None:
        raise CommandError("An action name and code artifact are required.")
    parameters = key_values(args.param, args.param_file, "parameter")
    annotations = key_values(args.annotation, args.annotation_file, "annotation")
    limits = {key: getattr(args, key) for key in LIMIT_OPTIONS if getattr(args, key) is not None}
    if existing is not None:
        # As OpenWhisk's update: parameters are replaced when given, annotations and limits
        # are merged key by key.
        if not parameters:
            parameters = _as_dict(existing.get("parameters"))
        annotations = {**_as_dict(existing.get("annotations")), **annotations}
        limits = {**(existing.get("limits") or {}), **limits}
    annotations.update(web_annotations(getattr(args, "web", None)))
    body = {"parameters": key_value_list(parameters),
            "annotations": key_value_list(annotations), "limits": limits}
    return body if exec_ is None else {"exec": exec_, **body}


WEB_VALUES = {"true": {"web-export": True, "raw-http": False, "final": True},
              "yes": {"web-export": True, "raw-http": False, "final": True},
              "raw": {"web-export": True, "raw-http": True, "final": True},
              "false": {"web-export": False, "raw-http": False, "final": False},
              "no": {"web-export": False, "raw-http": False, "final": False}}


def web_annotations(value: str | None) -> dict[str, Any]:
    """wsk's `--web true|false|raw`: the annotations a web action is made with (its
    parameters final, as wsk makes them)."""
    if value is None:
        return {}
    if value.lower() not in WEB_VALUES:
        raise CommandError(f"Invalid argument '{value}' for --web flag. Valid input consist "
                           "of 'yes', 'true', 'raw', 'false', or 'no'.")
    return dict(WEB_VALUES[value.lower()])


def _as_dict(pairs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {pair["key"]: pair["value"] for pair in pairs or []}


def action_get(ctx: Context, args: argparse.Namespace) -> Output:
    """`action get NAME`: `ok: got action NAME` and the action (without its code); with
    --summary its kind (a sequence's components) and parameters, with --url its web URL."""
    name = qualified(ctx, args.name)
    with unable(f"get action '{name.relative}'"):
        action = ctx.api.get_action(name)
    if getattr(args, "url", False):
        return Output(f"ok: got action {name.relative}\n{web_url(ctx, action)}", action)
    if getattr(args, "summary", False):
        return Output(render.action_summary(action), action)
    return Output(f"ok: got action {name.relative}\n{wsk_json(action)}", action)


def web_url(ctx: Context, action: dict[str, Any]) -> str:
    """`<apihost>/api/v1/web/NAMESPACE/PACKAGE/ACTION` (`default` for no package), as
    `wsk action get --url` prints it."""
    namespace, _, package = str(action.get("namespace", "")).partition("/")
    base = api_base_url(ctx.config.apihost)
    return f"{base}/web/{namespace}/{package or 'default'}/{action.get('name', '')}"


def action_list(ctx: Context, args: argparse.Namespace) -> Output:
    """`action list [NAMESPACE]`: the `actions` table."""
    namespace = args.namespace.strip("/") if args.namespace else ctx.config.namespace
    with unable(f"obtain the list of actions for namespace '{namespace}'"):
        actions = ctx.api.list_actions(namespace, args.limit, args.skip)
    if args.name_sort:
        actions = sorted(actions, key=lambda action: str(action.get("name", "")))
    return Output(render.action_rows(actions), actions)


def backbone_list(ctx: Context, args: argparse.Namespace) -> Output:
    """`backbone list`: the backbones table, the default marked."""
    with unable("obtain the list of backbones"):
        backbones = ctx.api.list_backbones()
    return Output(render.backbone_rows(backbones), backbones)


def action_delete(ctx: Context, args: argparse.Namespace) -> Output:
    """`action delete NAME`."""
    name = qualified(ctx, args.name)
    with unable(f"delete action '{name.relative}'"):
        action = ctx.api.delete_action(name)
    return Output(f"ok: deleted action {name.relative}", action)


def action_invoke(ctx: Context, args: argparse.Namespace) -> Output:
    """`action invoke NAME`: the id, or with --blocking the record, with --result the result."""
    name = qualified(ctx, args.name)
    parameters = key_values(args.param, args.param_file, "parameter")
    blocking = args.blocking or args.result
    with unable(f"invoke action '{name.relative}'"):
        reply = ctx.api.invoke(name, parameters, blocking, args.result)
    activation_id = reply.activation_id or _field(reply.body, "activationId")
    if reply.status == 202 and blocking:
        return Output(f"ok: invoked {name.absolute}, but the request has not yet finished, "
                      f"with id {activation_id}", reply.body, failed=True)
    heading = f"ok: invoked {name.absolute} with id {activation_id}"
    if reply.status == 202:
        return Output(heading, reply.body)
    text = wsk_json(reply.body) if args.result else f"{heading}\n{wsk_json(reply.body)}"
    # 502: the action failed; wsk prints what came back on stderr and exits non-zero.
    return Output(text, reply.body, failed=reply.status != 200)


def _field(body: Any, key: str) -> str:
    return str(body.get(key, "")) if isinstance(body, dict) else ""


# --- activations ---------------------------------------------------------------------------

def activation_list(ctx: Context, args: argparse.Namespace) -> Output:
    """`activation list [NAME]`: the activations table, or with --full every record."""
    name = _name_filter(args.name)
    with unable(f"obtain the list of activations for namespace '{ctx.config.namespace}'"):
        records = ctx.api.list_activations(name, args.limit, args.skip)
    if args.full:
        return Output("\n".join(["activations"] + [wsk_json(r) for r in records]), records)
    return Output(render.activation_rows(records), records)


def _name_filter(argument: str | None) -> str | None:
    # `/namespace` lists the namespace's activations, `[pkg/]name` or `/namespace/[pkg/]name`
    # one action's.
    if not argument:
        return None
    parts = argument.strip("/").split("/")
    if argument.startswith("/") and len(parts) == 1:
        return None
    # OpenWhisk's filter is the name in its namespace: `pkg/action`, or `action`.
    return "/".join(parts[1:] if argument.startswith("/") else parts)


def activation_get(ctx: Context, args: argparse.Namespace) -> Output:
    """`activation get ID|--last`: `ok: got activation ID` and the record."""
    activation_id = _chosen_activation(ctx, args)
    with unable(f"get activation '{activation_id}'"):
        record = ctx.api.get_activation(activation_id)
    return Output(f"ok: got activation {activation_id}\n{wsk_json(record)}", record)


def activation_logs(ctx: Context, args: argparse.Namespace) -> Output:
    """`activation logs ID|--last`: one log line per line."""
    activation_id = _chosen_activation(ctx, args)
    with unable(f"get logs for activation '{activation_id}'"):
        logs = ctx.api.activation_logs(activation_id)
    return Output("\n".join(str(line) for line in logs.get("logs") or []), logs)


def activation_result(ctx: Context, args: argparse.Namespace) -> Output:
    """`activation result ID|--last`: the result JSON."""
    activation_id = _chosen_activation(ctx, args)
    with unable(f"get result for activation '{activation_id}'"):
        response = ctx.api.activation_result(activation_id)
    result = response.get("result")
    return Output(wsk_json(result), result)


def _chosen_activation(ctx: Context, args: argparse.Namespace) -> str:
    if args.activation_id:
        return str(args.activation_id)
    if not args.last:
        raise CommandError("An activation ID is required.")
    with unable("get the last activation"):
        records = ctx.api.list_activations(None, 1, 0)
    if not records:
        raise CommandError("Activation list does not contain any activations.")
    return str(records[0]["activationId"])


def activation_poll(ctx: Context, args: argparse.Namespace) -> Iterator[Output]:
    """`activation poll [NAME]`: the logs of each new activation until --exit SECONDS.

    Given an activation id instead (this CLI's addition), wait for that activation to be
    recorded, print it the same way, and stop.
    """
    deadline = time.monotonic() + args.exit if args.exit > 0 else None
    yield Output("Enter Ctrl-c to exit.")
    if args.target and ACTIVATION_ID.fullmatch(args.target):
        yield Output("Polling for activation logs")
        yield _poll_block(_wait_for(ctx, args.target, deadline))
        return
    name = _name_filter(args.target)
    since = _poll_since(ctx, args)
    yield Output("Polling for activation logs")
    reported: set[str] = set()
    while deadline is None or time.monotonic() < deadline:
        with unable("poll activations"):
            records = ctx.api.list_activations(name, 200, 0)
        for record in reversed(records):  # oldest first
            if record["activationId"] not in reported and record.get("start", 0) >= since:
                reported.add(record["activationId"])
                yield _poll_block(record)
        time.sleep(POLL_INTERVAL_S)


def _poll_since(ctx: Context, args: argparse.Namespace) -> int:
    # wsk's start: the --since-* window, else just after the newest activation so far.
    window_s = (args.since_seconds + 60 * args.since_minutes + 3600 * args.since_hours
                + 86400 * args.since_days)
    if window_s:
        return int(time.time() * 1000) - window_s * 1000
    try:
        newest = ctx.api.list_activations(None, 1, 0)
    except ClientError:
        return int(time.time() * 1000)
    return int(newest[0].get("start", 0)) + 1 if newest else 0


def _wait_for(ctx: Context, activation_id: str, deadline: float | None) -> dict[str, Any]:
    while True:
        try:
            return ctx.api.get_activation(activation_id)
        except ClientError as error:
            if error.status != 404:
                raise CommandError(f"Unable to poll activation '{activation_id}': {error}") \
                    from error
        if deadline is not None and time.monotonic() >= deadline:
            raise CommandError(f"Unable to poll activation '{activation_id}': not recorded "
                               "before the --exit time")
        time.sleep(WAIT_INTERVAL_S)


def _poll_block(record: dict[str, Any]) -> Output:
    return Output(f"\nActivation: '{record.get('name')}' ({record.get('activationId')})\n"
                  f"{wsk_json(record.get('logs') or [])}", record)


# --- properties ----------------------------------------------------------------------------

def property_get(ctx: Context, args: argparse.Namespace) -> Output:
    """`property get [--auth] [--apihost] ...`: all properties when none is named.

    The API build is read from the server; `Unknown` when it does not answer.
    """
    rows = {"auth": ("whisk auth\t\t", lambda: ctx.config.auth),
            "apihost": ("whisk API host\t\t", lambda: ctx.config.apihost),
            "apiversion": ("whisk API version\t", lambda: "v1"),
            "namespace": ("whisk namespace\t\t", lambda: ctx.config.namespace),
            "cliversion": ("whisk CLI version\t", lambda: __version__),
            "apibuild": ("whisk API build\t\t", lambda: _api_build(ctx))}
    chosen = [key for key in rows if getattr(args, f"show_{key}")] or list(rows)
    values = {key: rows[key][1]() for key in chosen}
    return Output("\n".join(f"{rows[key][0]}{values[key]}" for key in chosen), values)


def _api_build(ctx: Context) -> str:
    try:
        return str(ctx.api.info().get("build", "Unknown"))
    except ClientError:
        return "Unknown"


def property_set(ctx: Context, args: argparse.Namespace) -> Output:
    """`property set --apihost HOST --auth KEY`: write them to the props file."""
    values, lines = {}, []
    if args.auth:
        values["AUTH"] = args.auth
        lines.append("ok: whisk auth set. Run 'lorafaas property get --auth' to see the new value.")
    if args.apihost:
        if not urlsplit(api_base_url(args.apihost)).hostname:
            raise CommandError(f"Unable to set API host value; the API host value "
                               f"'{args.apihost}' is invalid")
        values["APIHOST"] = args.apihost
        lines.append(f"ok: whisk API host set to {args.apihost}")
    if values:
        save_props(ctx.config.props_file, values)
    return Output("\n".join(lines), {key.lower(): value for key, value in values.items()})
