"""Operator commands: `lorafaas admin namespace create|delete`, `admin key rotate`,
`admin profile`.

They work on the database directly (no running controller needed), migrating it first;
`admin profile` also runs the prefill profiler's container on the Docker engine.
The registry is imported only when a command runs, so building the CLI's parser stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from lorafaas.errors import LoraFaasError, Unauthorized
from lorafaas.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
AdminCommand = Callable[[Settings, str], str]
# A command of its own arguments: it reads what it needs of the parsed command line.
ParsedCommand = Callable[[Settings, argparse.Namespace], str]


def create_namespace_command(settings: Settings, name: str) -> str:
    """Create namespace `name` and return its `uuid:key` (Conflict if it exists)."""
    from lorafaas.registry.db import upgrade
    from lorafaas.registry.namespaces import create_namespace

    upgrade(settings.database_url)
    return asyncio.run(_in_transaction(settings, lambda session: create_namespace(session, name)))


def delete_namespace_command(settings: Settings, name: str) -> str:
    """Delete namespace `name` with its keys, actions and activations (NotFound if absent)."""
    from lorafaas.registry.artifacts import ArtifactStore
    from lorafaas.registry.db import upgrade
    from lorafaas.registry.namespaces import delete_namespace

    upgrade(settings.database_url)
    actions, orphaned = asyncio.run(
        _in_transaction(settings, lambda session: delete_namespace(session, name)))
    store = ArtifactStore(settings.artifacts_dir)
    for digest in sorted(orphaned):  # after the commit, as the actions resource does
        store.remove(digest)
    return f"ok: deleted namespace {name} ({actions} action{'' if actions == 1 else 's'})"


def rotate_key_command(settings: Settings, name: str) -> str:
    """Replace the keys of namespace `name` by a new one and return it (NotFound if absent)."""
    from lorafaas.props import write_props
    from lorafaas.registry.db import upgrade

    upgrade(settings.database_url)
    credential, props_had_old_key = asyncio.run(
        _in_transaction(settings, lambda session: _rotate(session, settings, name)))
    if props_had_old_key:
        # The local props file held the old key: keep `serve` and the CLI verbs working.
        write_props(settings.props_file, {"AUTH": credential})
    return credential


async def _rotate(session: AsyncSession, settings: Settings, name: str) -> tuple[str, bool]:
    from lorafaas.props import read_props
    from lorafaas.registry.namespaces import rotate_key

    props_credential = read_props(settings.props_file).get("AUTH", "")
    props_had_old_key = await _namespace_of(session, props_credential) == name
    return await rotate_key(session, name), props_had_old_key


async def _namespace_of(session: AsyncSession, credential: str) -> str | None:
    from lorafaas.registry.namespaces import authenticate

    try:
        return (await authenticate(session, credential)).namespace
    except Unauthorized:
        return None


def profile_command(settings: Settings, args: argparse.Namespace) -> str:
    """Profile the prefill of the given adapter ranks (every deployed one by default) in
    the runtime image, store the fits and return their tables."""
    from lorafaas.admin_profile import profile_ranks
    from lorafaas.registry.db import upgrade

    upgrade(settings.database_url)
    return asyncio.run(profile_ranks(settings, args.rank or [], args.backbone))


async def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from lorafaas.registry.db import make_engine, make_sessions

    engine = make_engine(settings.database_url)
    try:
        async with make_sessions(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


# noun -> verb -> (command, help); each takes one argument, the namespace's name.
ADMIN_COMMANDS: dict[str, dict[str, tuple[AdminCommand, str]]] = {
    "namespace": {"create": (create_namespace_command,
                             "create a namespace and print its new key (uuid:key)"),
                  "delete": (delete_namespace_command,
                             "delete a namespace: its keys, actions and activations")},
    "key": {"rotate": (rotate_key_command,
                       "replace a namespace's keys by a new one and print it (uuid:key)")},
}


def add_admin_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `admin` command and its nouns and verbs to the CLI's parser."""
    admin = commands.add_parser("admin", help="operator commands: namespaces and their keys, "
                                              "prefill profiles")
    nouns = admin.add_subparsers(dest="admin_noun", metavar="NOUN", required=True)
    for noun, verbs in ADMIN_COMMANDS.items():
        verb_parsers = nouns.add_parser(noun, help=f"{noun} commands").add_subparsers(
            dest="admin_verb", metavar="VERB", required=True)
        for verb, (command, help_text) in verbs.items():
            parser = verb_parsers.add_parser(verb, help=help_text)
            parser.add_argument("name", help="the namespace")
            parser.set_defaults(admin_command=_on_name(command))
    profile = nouns.add_parser("profile", help="profile the prefill time T(b) of adapter ranks "
                                               "now, store the fits and print them")
    profile.add_argument("--rank", type=int, action="append",
                         help="an adapter rank to profile (repeatable; default: every rank a "
                              "deployed function has)")
    profile.add_argument("--backbone", metavar="NAME",
                         help="profile the functions of this backbone (default: the default "
                              "backbone; fits hold for one backbone)")
    profile.set_defaults(admin_command=profile_command)


def _on_name(command: AdminCommand) -> ParsedCommand:
    return lambda settings, args: command(settings, args.name)


def run_admin(args: argparse.Namespace, settings: Settings) -> str:
    """Run the parsed admin command and return what it prints on stdout."""
    from sqlalchemy.exc import OperationalError

    command: ParsedCommand = args.admin_command
    try:
        return command(settings, args)
    except OperationalError as error:
        # An unreachable or unusable database: the driver's message says which and why.
        raise LoraFaasError(f"cannot use the registry database: {error.orig}") from error
