"""The `package` verbs (wsk's): create, update, bind, get, list, delete."""

from __future__ import annotations

import argparse
from typing import Any

from lorafaas.client import render
from lorafaas.client.commands import Context, unable
from lorafaas.client.output import CommandError, Output, wsk_json
from lorafaas.client.payload import key_value_list, key_values
from lorafaas.names import InvalidName, QualifiedName


def package_name(ctx: Context, text: str) -> QualifiedName:
    """`PACKAGE` or `/NAMESPACE/PACKAGE`: a package is named as an action of the default
    package is (`name` holds the package's name)."""
    try:
        name = QualifiedName.parse(text, ctx.config.namespace)
    except InvalidName as error:
        raise CommandError(error.message) from error
    if name.package is not None:
        raise CommandError(f"'{text}' is not a package name: PACKAGE or /NAMESPACE/PACKAGE "
                           "expected")
    return name


def package_body(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body: only what was given, so that an update keeps the rest (OpenWhisk merges)."""
    body: dict[str, Any] = {}
    parameters = key_values(args.param, args.param_file, "parameter")
    annotations = key_values(args.annotation, args.annotation_file, "annotation")
    if parameters:
        body["parameters"] = key_value_list(parameters)
    if annotations:
        body["annotations"] = key_value_list(annotations)
    shared = getattr(args, "shared", None)
    if shared is not None:
        body["publish"] = shared == "yes"
    return body


def package_create(ctx: Context, args: argparse.Namespace) -> Output:
    """`package create NAME`: a 409 when it exists."""
    name = package_name(ctx, args.name)
    with unable(f"create package '{name.name}'"):
        package = ctx.api.put_package(name, package_body(args), overwrite=False)
    return Output(f"ok: created package {name.name}", package)


def package_update(ctx: Context, args: argparse.Namespace) -> Output:
    """`package update NAME`: what is not given is kept; created when absent."""
    name = package_name(ctx, args.name)
    with unable(f"update package '{name.name}'"):
        package = ctx.api.put_package(name, package_body(args), overwrite=True)
    return Output(f"ok: updated package {name.name}", package)


def package_bind(ctx: Context, args: argparse.Namespace) -> Output:
    """`package bind PACKAGE BINDING`: a binding of this namespace to a package of it, or
    to a shared one of another (`/NAMESPACE/PACKAGE`)."""
    bound, binding = package_name(ctx, args.package), package_name(ctx, args.binding)
    body = {**package_body(args), "binding": {"namespace": bound.namespace, "name": bound.name}}
    with unable(f"bind package '{bound.name}'"):
        package = ctx.api.put_package(binding, body, overwrite=False)
    return Output(f"ok: created binding {binding.name}", package)


def package_get(ctx: Context, args: argparse.Namespace) -> Output:
    """`package get NAME`: the package (with its actions), or with --summary their names."""
    name = package_name(ctx, args.name)
    with unable(f"get package '{name.name}'"):
        package = ctx.api.get_package(name)
    if args.summary:
        return Output(render.package_summary(package), package)
    return Output(f"ok: got package {name.name}\n{wsk_json(package)}", package)


def package_list(ctx: Context, args: argparse.Namespace) -> Output:
    """`package list [NAMESPACE]`: the `packages` table."""
    namespace = args.namespace.strip("/") if args.namespace else ctx.config.namespace
    with unable(f"obtain the list of packages for namespace '{namespace}'"):
        packages = ctx.api.list_packages(namespace, args.limit, args.skip)
    return Output(render.package_rows(packages), packages)


def package_delete(ctx: Context, args: argparse.Namespace) -> Output:
    """`package delete NAME`: refused (409) while it holds actions."""
    name = package_name(ctx, args.name)
    with unable(f"delete package '{name.name}'"):
        package = ctx.api.delete_package(name)
    return Output(f"ok: deleted package {name.name}", package)
