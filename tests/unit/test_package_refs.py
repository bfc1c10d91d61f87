"""Rules', sequences' and web actions' names reaching an action in a package, or through a binding, on a
real SQLite registry built by the migrations."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.controller.entity_refs import find_rule_action, parse_ref
from lorafaas.controller.protocol import LORA_KIND
from lorafaas.names import QualifiedName
from lorafaas.registry import actions as action_rows
from lorafaas.registry import packages as package_rows
from lorafaas.registry.models import Artifact, Namespace
from tests.unit.test_invoker_seam import DIGEST, sessions

__all__ = ["sessions"]  # the seam test's fixture, used here


async def _guest(sessions: async_sessionmaker[AsyncSession]) -> int:
    """`guest` with the package `p` holding `c`, the binding `bound` of `p`, and `a`."""
    async with sessions() as session, session.begin():
        namespace = Namespace(name="guest", created_ms=0)
        session.add_all([namespace, Artifact(digest=DIGEST, size_bytes=1, ref_count=2,
                                             created_ms=0)])
        await session.flush()
        await package_rows.put_package(session, namespace, "p", package_rows.PackageSpec(),
                                       False)
        await package_rows.put_package(session, namespace, "bound", package_rows.PackageSpec(
            binding=QualifiedName("guest", None, "p")), False)
        for name in (QualifiedName("guest", "p", "c"), QualifiedName("guest", None, "a")):
            await action_rows.put_action(session, namespace, name, action_rows.ActionSpec(
                LORA_KIND, DIGEST, [], [], {}, False), False, 5)
        return namespace.id


async def test_a_rule_reaches_a_packages_action_and_through_a_binding(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    await _guest(sessions)
    async with sessions() as session:
        found = {text: await find_rule_action(session, parse_ref(text, "guest", "action"),
                                              "guest")
                 for text in ("a", "p/c", "bound/c", "/_/p/c", "p/missing", "nope/c")}
        other = await find_rule_action(session, parse_ref("/other/p/c", "guest", "action"),
                                       "guest")
    assert found["a"] is not None and found["a"].action.name == "a"
    for text in ("p/c", "bound/c", "/_/p/c"):
        resolved = found[text]
        assert resolved is not None
        assert (resolved.action.package, resolved.action.name) == ("p", "c")
        assert resolved.invoked.relative == text.removeprefix("/_/")
    assert found["p/missing"] is None and found["nope/c"] is None and other is None


async def test_a_name_reaches_its_package_or_binding_action_or_none(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    namespace_id = await _guest(sessions)
    async with sessions() as session:
        reached = [await package_rows.reach_action(session, namespace_id,
                                                   QualifiedName("guest", package, name))
                   for package, name in ((None, "a"), ("p", "c"), ("bound", "c"), ("p", "a"),
                                         (None, "c"))]
    assert [None if row is None else (row.action.package, row.action.name)
            for row in reached] == \
        [("", "a"), ("p", "c"), ("p", "c"), None, None]
