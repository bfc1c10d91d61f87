"""`lorafaas admin namespace create` and `admin key rotate`, run as a user would, on each backend.

The command migrates the (empty) database itself, prints the key alone on stdout, and
reports errors on stderr with exit status 1.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lorafaas.errors import Unauthorized
from lorafaas.props import read_props, write_props
from lorafaas.registry.db import make_engine, make_sessions
from lorafaas.registry.namespaces import authenticate

LORAFAAS = Path(sys.executable).parent / "lorafaas"
CREDENTIAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{64}")


@pytest.fixture
def admin_env(empty_database_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a `lorafaas` process on the test's own home and database."""
    return {**os.environ, "LORAFAAS_HOME": str(tmp_path / "home"),
            "LORAFAAS_DATABASE_URL": empty_database_url}


def lorafaas(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `lorafaas` command."""
    return subprocess.run([str(LORAFAAS), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def credential_of(result: subprocess.CompletedProcess[str]) -> str:
    """The key a successful command printed: the only thing on its stdout."""
    assert result.returncode == 0, result.stderr
    assert CREDENTIAL.fullmatch(result.stdout.strip()), result.stdout
    return result.stdout.strip()


def namespace_of(env: dict[str, str], credential: str) -> str | None:
    """The namespace the registry authenticates the credential for, None when rejected."""
    async def check() -> str | None:
        engine = make_engine(env["LORAFAAS_DATABASE_URL"])
        try:
            async with make_sessions(engine)() as session:
                return (await authenticate(session, credential)).namespace
        except Unauthorized:
            return None
        finally:
            await engine.dispose()

    return asyncio.run(check())


def test_namespace_create_prints_a_working_key(admin_env: dict[str, str]) -> None:
    result = lorafaas(admin_env, "admin", "namespace", "create", "alice")
    assert namespace_of(admin_env, credential_of(result)) == "alice"
    # It migrated the empty database, without a word of it.
    assert "alembic" not in result.stderr and "Running upgrade" not in result.stderr, \
        result.stderr


@pytest.mark.parametrize("name", ["bad name!", "-alice", "alice ", "a/b", "é", "x" * 257])
def test_namespace_names_follow_openwhisk_s_rules(admin_env: dict[str, str],
                                                  name: str) -> None:
    result = lorafaas(admin_env, "admin", "namespace", "create", "--", name)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"lorafaas: {name!r} is not a valid namespace name: it "
                                    "must start with a letter, digit or underscore"), \
        result.stderr
    assert asyncio.run(namespace_names(admin_env)) == []


def test_namespace_names_openwhisk_allows_are_accepted(admin_env: dict[str, str]) -> None:
    for name in ("a", "alice@example.com", "team 2.dev-x", "_private"):
        credential_of(lorafaas(admin_env, "admin", "namespace", "create", name))
    assert asyncio.run(namespace_names(admin_env)) == sorted(
        ["a", "alice@example.com", "team 2.dev-x", "_private"])


def test_namespace_delete_removes_it_and_its_keys(admin_env: dict[str, str]) -> None:
    alice = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "alice"))
    bob = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "bob"))
    result = lorafaas(admin_env, "admin", "namespace", "delete", "alice")
    assert (result.returncode, result.stdout) == (0, "ok: deleted namespace alice (0 actions)\n")
    assert "alembic" not in result.stderr
    assert namespace_of(admin_env, alice) is None
    assert namespace_of(admin_env, bob) == "bob"
    again = lorafaas(admin_env, "admin", "namespace", "delete", "alice")
    assert (again.returncode, again.stdout) == (1, "")
    assert "lorafaas: namespace 'alice' does not exist" in again.stderr.splitlines()
    # The name is free again.
    assert namespace_of(admin_env, credential_of(
        lorafaas(admin_env, "admin", "namespace", "create", "alice"))) == "alice"


async def namespace_names(env: dict[str, str]) -> list[str]:
    """The names of every namespace in the registry."""
    from lorafaas.registry.namespaces import list_namespaces

    engine = make_engine(env["LORAFAAS_DATABASE_URL"])
    try:
        async with make_sessions(engine)() as session:
            return [namespace.name for namespace in await list_namespaces(session)]
    finally:
        await engine.dispose()


def stored_artifacts(store: Path) -> list[str]:
    """The artifacts' zips and folders in the store (not its staging folder)."""
    return sorted(path.name for path in store.iterdir() if not path.name.startswith("."))


@pytest.mark.docker
async def test_namespace_delete_takes_its_actions_and_artifacts(platform, demo_models,  # type: ignore[no-untyped-def]
                                                                make_zip) -> None:
    import aiohttp

    env = {**os.environ, "LORAFAAS_HOME": str(platform.settings.home),
           "LORAFAAS_DATABASE_URL": platform.settings.database_url}
    alice = (await asyncio.to_thread(lorafaas, env, "admin", "namespace", "create",
                                     "alice")).stdout.strip()
    auth = {"Authorization": aiohttp.encode_basic_auth(*alice.split(":", 1))}
    code = base64.b64encode(make_zip(demo_models.adapters["shout"])).decode()
    put = await platform.request("PUT", "/api/v1/namespaces/alice/actions/shout",
                                 headers=auth, json={"exec": {"kind": "lora", "binary": True,
                                                              "code": code}})
    assert put.status == 200, await put.text()
    assert stored_artifacts(platform.settings.artifacts_dir), "the adapter is in the store"

    result = await asyncio.to_thread(lorafaas, env, "admin", "namespace", "delete", "alice")
    assert (result.returncode, result.stdout) == (0, "ok: deleted namespace alice (1 action)\n")
    assert stored_artifacts(platform.settings.artifacts_dir) == []
    gone = await platform.client.get("/api/v1/namespaces/_/actions", headers=auth)
    assert gone.status == 401
    assert (await platform.request("GET", "/api/v1/namespaces/_/actions")).status == 200


@pytest.mark.docker
async def test_an_invalid_namespace_in_a_path_is_a_400(platform) -> None:  # type: ignore[no-untyped-def]
    response = await platform.request("GET", "/api/v1/namespaces/bad%20name!/actions")
    body = await response.json()
    assert response.status == 400
    assert body["error"].startswith("'bad name!' is not a valid namespace name")


def test_namespace_create_of_an_existing_namespace_fails(admin_env: dict[str, str]) -> None:
    first = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "alice"))
    again = lorafaas(admin_env, "admin", "namespace", "create", "alice")
    assert again.returncode == 1
    assert again.stdout == ""
    assert "lorafaas: namespace 'alice' exists already" in again.stderr.splitlines()
    assert namespace_of(admin_env, first) == "alice"


def test_key_rotate_replaces_the_key(admin_env: dict[str, str]) -> None:
    old = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "alice"))
    other = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "bob"))
    new = credential_of(lorafaas(admin_env, "admin", "key", "rotate", "alice"))
    assert new != old
    assert namespace_of(admin_env, old) is None
    assert namespace_of(admin_env, new) == "alice"
    assert namespace_of(admin_env, other) == "bob"


def test_key_rotate_of_an_unknown_namespace_fails(admin_env: dict[str, str]) -> None:
    result = lorafaas(admin_env, "admin", "key", "rotate", "nobody")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "lorafaas: namespace 'nobody' does not exist" in result.stderr.splitlines()


def test_key_rotate_updates_the_props_file_that_held_the_old_key(
        admin_env: dict[str, str]) -> None:
    props = Path(admin_env["LORAFAAS_HOME"]) / "props"
    old = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "guest"))
    write_props(props, {"APIHOST": "http://127.0.0.1:3233", "AUTH": old})
    credential_of(lorafaas(admin_env, "admin", "namespace", "create", "alice"))
    credential_of(lorafaas(admin_env, "admin", "key", "rotate", "alice"))
    assert read_props(props)["AUTH"] == old  # another namespace's rotation leaves it alone
    new = credential_of(lorafaas(admin_env, "admin", "key", "rotate", "guest"))
    assert read_props(props) == {"APIHOST": "http://127.0.0.1:3233", "AUTH": new}
