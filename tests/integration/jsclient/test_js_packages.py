"""Packages and bindings driven by the official OpenWhisk JS client, checked against what
OpenWhisk's controller answers (Packages.scala): create, get (with its actions; a binding
merged with its package), list and count, update that merges, delete (409 while a package
holds actions), a binding's parameters between the package's and the action's, and
`publish` deciding whether another namespace may bind the package."""

from __future__ import annotations

from typing import Any

import pytest

from lorafaas.admin import create_namespace_command
from tests.integration.jsclient.harness import ECHO, JsClient
from tests.integration.served import ServedPlatform

pytestmark = pytest.mark.docker


def kv(**values: Any) -> list[dict[str, Any]]:
    """OpenWhisk's `[{"key", "value"}]` form."""
    return [{"key": key, "value": value} for key, value in values.items()]


def annotation(entity: dict[str, Any], key: str) -> Any:
    """One annotation's value."""
    return next((a["value"] for a in entity["annotations"] if a["key"] == key), None)


def test_packages_bindings_and_their_parameters(ow: JsClient) -> None:
    got = ow.run("""
const a = {}
a.created = await ow.packages.create({name: 'jsp', package: {parameters: args.pkg}})
a.action = await ow.actions.create({name: 'jsp/echo', action: args.echo, kind: 'python:3',
                                    params: {b: 'action', c: 'action'}})
a.binding = await ow.packages.create({name: 'jsp-bound', package: {
  binding: {namespace: '_', name: 'jsp'}, parameters: [{key: 'a', value: 'binding'}]}})
a.got = await ow.packages.get({name: 'jsp'})
a.gotBinding = await ow.packages.get({name: 'jsp-bound'})
a.listed = await ow.packages.list()
a.counted = await ow.packages.list({count: true})
a.skipped = await ow.packages.list({count: true, skip: 1})
a.direct = await helpers.invoke(ow, {name: 'jsp/echo', params: {c: 'invoke'}})
a.bound = await helpers.invoke(ow, {name: 'jsp-bound/echo'})
a.byPath = await ow.activations.list({name: 'jsp/echo'})
a.byName = await ow.activations.list({name: 'echo'})
a.reserved = await helpers.attempt(ow.packages.create({name: 'default'}))
a.exists = await helpers.attempt(ow.packages.create({name: 'jsp'}))
a.nowhere = await helpers.attempt(ow.packages.create({name: 'jsp-x', package: {
  binding: {namespace: '_', name: 'no-such-package'}}}))
a.ofBinding = await helpers.attempt(ow.packages.create({name: 'jsp-x', package: {
  binding: {namespace: '_', name: 'jsp-bound'}}}))
a.toBinding = await helpers.attempt(ow.packages.update({name: 'jsp', package: {
  binding: {namespace: '_', name: 'jsp-bound'}}}))
a.notEmpty = await helpers.attempt(ow.packages.delete({name: 'jsp'}))
a.unbound = await ow.packages.delete({name: 'jsp-bound'})
await ow.actions.delete({name: 'jsp/echo'})
a.deleted = await ow.packages.delete({name: 'jsp'})
a.gone = await helpers.attempt(ow.packages.get({name: 'jsp'}))
return a
""", echo=ECHO, pkg=kv(a="package", b="package"))
    created = got["created"]
    assert {k: created[k] for k in ("namespace", "name", "version", "publish", "binding",
                                    "parameters", "annotations")} == {
        "namespace": "guest", "name": "jsp", "version": "0.0.1", "publish": False,
        "binding": {}, "parameters": kv(a="package", b="package"), "annotations": []}
    assert got["action"]["namespace"] == "guest/jsp"
    assert [(a["name"], a["namespace"], a["version"]) for a in got["got"]["actions"]] == [
        ("echo", "guest/jsp", "0.0.1")]
    # A binding: its package named, and the controller's `binding` annotation.
    assert got["binding"]["binding"] == {"namespace": "guest", "name": "jsp"}
    assert annotation(got["binding"], "binding") == {"namespace": "guest", "name": "jsp"}
    # GET of a binding: the package's actions, its parameters under the binding's.
    bound = got["gotBinding"]
    assert bound["name"] == "jsp-bound" and bound["binding"] == {"namespace": "guest",
                                                                 "name": "jsp"}
    assert sorted(bound["parameters"], key=lambda p: p["key"]) == kv(a="binding", b="package")
    assert [a["name"] for a in bound["actions"]] == ["echo"]
    listed = {p["name"]: p for p in got["listed"]}
    assert {"jsp", "jsp-bound"} <= set(listed)
    assert listed["jsp"]["binding"] == {} and listed["jsp-bound"]["binding"] == {
        "namespace": "guest", "name": "jsp"}
    assert got["counted"] == {"packages": len(got["listed"])}
    assert got["skipped"] == {"packages": len(got["listed"]) - 1}
    # package < action < invocation; package < binding < action.
    direct = got["direct"]["response"]["result"]
    assert {k: direct[k] for k in "abc"} == {"a": "package", "b": "action", "c": "invoke"}
    through = got["bound"]
    assert {k: through["response"]["result"][k] for k in "abc"} == {
        "a": "binding", "b": "action", "c": "action"}
    assert through["name"] == "echo" and through["namespace"] == "guest"
    assert annotation(through, "path") == "guest/jsp/echo"
    assert annotation(through, "binding") == "guest/jsp-bound"
    # Refusals as OpenWhisk words them.
    assert (got["reserved"]["statusCode"], got["reserved"]["body"]["error"]) == (
        400, "Package name 'default' is reserved.")
    assert got["exists"]["statusCode"] == 409
    assert (got["nowhere"]["statusCode"], got["nowhere"]["body"]["error"]) == (
        400, "Binding references a package that does not exist.")
    assert (got["ofBinding"]["statusCode"], got["ofBinding"]["body"]["error"]) == (
        400, "Cannot bind to another package binding.")
    assert (got["toBinding"]["statusCode"], got["toBinding"]["body"]["error"]) == (
        409, "Resource is a package and cannot be converted into a binding.")
    assert (got["notEmpty"]["statusCode"], got["notEmpty"]["body"]["error"]) == (
        409, "Package not empty (contains 1 entity)")
    assert got["unbound"]["name"] == "jsp-bound" and got["deleted"]["name"] == "jsp"
    assert got["gone"]["statusCode"] == 404
    # OpenWhisk's `name` filter is `package/action` for a package's action, reached directly
    # or bound (its activations view keys on the `path` annotation's package); `action`
    # alone is one of the default package.
    ran = {got["direct"]["activationId"], through["activationId"]}
    assert {r["activationId"] for r in got["byPath"]} == ran
    assert not ran & {r["activationId"] for r in got["byName"]}


def test_package_update_merges_what_it_leaves_out(ow: JsClient) -> None:
    got = ow.run("""
const a = {}
await ow.packages.create({name: 'jsp-merge', package: {parameters: [{key: 'a', value: 1}],
  annotations: [{key: 'note', value: 'kept'}]}})
a.published = await ow.packages.update({name: 'jsp-merge', package: {publish: true}})
a.renamed = await ow.packages.update({name: 'jsp-merge', package: {
  parameters: [{key: 'a', value: 2}]}})
a.bare = await ow.packages.update({name: 'jsp-merge'})
return a
""")
    published, renamed, bare = got["published"], got["renamed"], got["bare"]
    assert published["version"] == "0.0.2" and published["publish"] is True
    assert published["parameters"] == kv(a=1)
    assert published["annotations"] == kv(note="kept")
    assert renamed["version"] == "0.0.3" and renamed["parameters"] == kv(a=2)
    assert renamed["publish"] is True and renamed["annotations"] == kv(note="kept")
    assert bare["version"] == "0.0.4" and bare["parameters"] == kv(a=2)


def test_publish_decides_who_may_bind(ow: JsClient, served: ServedPlatform) -> None:
    carol = JsClient(ow.modules, ow.apihost, create_namespace_command(served.settings,
                                                                      "jscarol"))
    ow.run("""
await ow.packages.create({name: 'jsp-shared', package: {publish: true,
  parameters: [{key: 'a', value: 'shared'}]}})
await ow.actions.create({name: 'jsp-shared/echo', action: args.echo, kind: 'python:3'})
await ow.packages.create({name: 'jsp-private'})
""", echo=ECHO)
    got = carol.run("""
const a = {}
a.binding = await ow.packages.create({name: 'theirs', package: {
  binding: {namespace: 'guest', name: 'jsp-shared'}, parameters: [{key: 'b', value: 'mine'}]}})
a.seen = await ow.packages.get({name: 'theirs'})
a.run = await helpers.invoke(ow, {name: 'theirs/echo', params: {c: 'invoke'}})
a.closed = await helpers.attempt(ow.packages.create({name: 'closed', package: {
  binding: {namespace: 'guest', name: 'jsp-private'}}}))
a.absent = await helpers.attempt(ow.packages.get({name: 'closed'}))
return a
""")
    assert got["binding"]["binding"] == {"namespace": "guest", "name": "jsp-shared"}
    assert [a["name"] for a in got["seen"]["actions"]] == ["echo"]
    record = got["run"]
    assert record["namespace"] == "jscarol" and record["subject"] == "jscarol"
    assert annotation(record, "path") == "guest/jsp-shared/echo"
    assert {k: record["response"]["result"][k] for k in "abc"} == {
        "a": "shared", "b": "mine", "c": "invoke"}
    # Not published: the binding is refused (entitlement: 403), and nothing is left.
    assert got["closed"]["statusCode"] == 403
    assert got["absent"]["statusCode"] == 404
