"""The `trigger` and `rule` verbs (wsk's words): call the REST API, return what to print."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from lorafaas.client import commands
from lorafaas.client.commands import Context, unable
from lorafaas.client.output import CommandError, Output, wsk_json
from lorafaas.client.payload import key_value_list, key_values

NAME_WIDTH = 70


def qualified(ctx: Context, text: str) -> tuple[str, str]:
    """(namespace, name) of a trigger or rule: `NAME` or `/NAMESPACE/NAME` (never in a
    package, as OpenWhisk's)."""
    name = commands.qualified(ctx, text)
    if name.package is not None:
        raise CommandError(f"'{text}' is not a valid qualified name: triggers and rules are "
                           "not in packages (/NAMESPACE/NAME expected)")
    return name.namespace, name.name


def _path(namespace: str, collection: str, name: str | None = None) -> str:
    path = f"/namespaces/{quote(namespace, safe='')}/{collection}"
    return path if name is None else f"{path}/{quote(name, safe='')}"


def _trigger_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    parameters = key_values(args.param, args.param_file, "parameter")
    annotations = key_values(args.annotation, args.annotation_file, "annotation")
    if args.feed:
        annotations["feed"] = args.feed
    if parameters:
        body["parameters"] = key_value_list(parameters)
    if annotations:
        body["annotations"] = key_value_list(annotations)
    return body


def trigger_create(ctx: Context, args: argparse.Namespace) -> Output:
    """`trigger create NAME [--feed FEED] [-p KEY VALUE]...`."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"create trigger '{name}'"):
        trigger = ctx.api.request("PUT", _path(namespace, "triggers", name),
                                  body=_trigger_body(args)).body
    return Output(f"ok: created trigger {name}", trigger)


def trigger_update(ctx: Context, args: argparse.Namespace) -> Output:
    """`trigger update NAME ...`: what is not given is kept; created when absent."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"update trigger '{name}'"):
        trigger = ctx.api.request("PUT", _path(namespace, "triggers", name),
                                  body=_trigger_body(args), params={"overwrite": "true"}).body
    return Output(f"ok: updated trigger {name}", trigger)


def trigger_get(ctx: Context, args: argparse.Namespace) -> Output:
    """`trigger get NAME`."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"get trigger '{name}'"):
        trigger = ctx.api.request("GET", _path(namespace, "triggers", name)).body
    return Output(f"ok: got trigger {name}\n{wsk_json(trigger)}", trigger)


def trigger_delete(ctx: Context, args: argparse.Namespace) -> Output:
    """`trigger delete NAME`."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"delete trigger '{name}'"):
        trigger = ctx.api.request("DELETE", _path(namespace, "triggers", name)).body
    return Output(f"ok: deleted trigger {name}", trigger)


def trigger_list(ctx: Context, args: argparse.Namespace) -> Output:
    """`trigger list [NAMESPACE]`: the `triggers` table."""
    namespace = args.namespace.strip("/") if args.namespace else ctx.config.namespace
    with unable(f"obtain the list of triggers for namespace '{namespace}'"):
        triggers = ctx.api.request("GET", _path(namespace, "triggers"),
                                   params={"limit": args.limit, "skip": args.skip}).body
    lines = ["triggers"] + [f"{'/' + t['namespace'] + '/' + t['name']:<{NAME_WIDTH}} private"
                            for t in triggers]
    return Output("\n".join(lines), triggers)


def trigger_fire(ctx: Context, args: argparse.Namespace) -> Output:
    """`trigger fire NAME [-p KEY VALUE]...`: the trigger's activation id."""
    namespace, name = qualified(ctx, args.name)
    payload = key_values(args.param, args.param_file, "parameter")
    with unable(f"fire trigger '{name}'"):
        reply = ctx.api.request("POST", _path(namespace, "triggers", name), body=payload,
                                accept=(202, 204))
    if reply.status == 204:
        return Output(f"ok: triggered /{namespace}/{name}, no rule is active", {})
    activation_id = reply.body["activationId"]
    return Output(f"ok: triggered /{namespace}/{name} with id {activation_id}", reply.body)


def rule_create(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule create NAME TRIGGER ACTION`: the rule is active."""
    return _put_rule(ctx, args, overwrite=False, verb="create", done="created")


def rule_update(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule update NAME TRIGGER ACTION`."""
    return _put_rule(ctx, args, overwrite=True, verb="update", done="updated")


def _put_rule(ctx: Context, args: argparse.Namespace, overwrite: bool, verb: str,
              done: str) -> Output:
    namespace, name = qualified(ctx, args.name)
    body = {"trigger": _fully(namespace, args.trigger), "action": _fully(namespace, args.action)}
    with unable(f"{verb} rule '{name}'"):
        rule = ctx.api.request("PUT", _path(namespace, "rules", name), body=body,
                               params={"overwrite": "true" if overwrite else "false"}).body
    return Output(f"ok: {done} rule {name}", rule)


def _fully(namespace: str, name: str) -> str:
    # wsk qualifies a rule's names before it sends them: NAME is in the rule's namespace.
    if name.startswith("/"):
        return name
    if "/" in name and name.count("/") > 1:
        raise CommandError(f"'{name}' is not a valid qualified name")
    return f"/{namespace}/{name}"


def rule_status(ctx: Context, args: argparse.Namespace, status: str, done: str) -> Output:
    """`rule enable|disable NAME`."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"{'enable' if status == 'active' else 'disable'} rule '{name}'"):
        ctx.api.request("POST", _path(namespace, "rules", name), body={"status": status})
    return Output(f"ok: {done} rule {name}", {"name": name, "status": status})


def rule_enable(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule enable NAME`."""
    return rule_status(ctx, args, "active", "enabled")


def rule_disable(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule disable NAME`."""
    return rule_status(ctx, args, "inactive", "disabled")


def rule_get(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule get NAME`."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"get rule '{name}'"):
        rule = ctx.api.request("GET", _path(namespace, "rules", name)).body
    return Output(f"ok: got rule {name}\n{wsk_json(rule)}", rule)


def rule_delete(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule delete NAME`."""
    namespace, name = qualified(ctx, args.name)
    with unable(f"delete rule '{name}'"):
        rule = ctx.api.request("DELETE", _path(namespace, "rules", name)).body
    return Output(f"ok: deleted rule {name}", rule)


def rule_list(ctx: Context, args: argparse.Namespace) -> Output:
    """`rule list [NAMESPACE]`: the `rules` table with each rule's status."""
    namespace = args.namespace.strip("/") if args.namespace else ctx.config.namespace
    with unable(f"obtain the list of rules for namespace '{namespace}'"):
        rules = ctx.api.request("GET", _path(namespace, "rules"),
                                params={"limit": args.limit, "skip": args.skip}).body
    lines = ["rules"] + [f"{'/' + r['namespace'] + '/' + r['name']:<{NAME_WIDTH}} private "
                         f"{r.get('status', '')}" for r in rules]
    return Output("\n".join(lines), rules)
