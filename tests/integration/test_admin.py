"""`lorafaas admin namespace create` and `admin key rotate`, run as a user would, on each backend.

The command migrates the (empty) database itself, prints the key alone on stdout, and
reports errors on stderr with exit status 1.
"""

from __future__ import annotations

import asyncio
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
    credential = credential_of(lorafaas(admin_env, "admin", "namespace", "create", "alice"))
    assert namespace_of(admin_env, credential) == "alice"


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
