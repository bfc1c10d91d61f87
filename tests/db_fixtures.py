"""Registry databases for tests: a SQLite file, and a fresh PostgreSQL database per test.

The PostgreSQL half runs where `LORAFAAS_TEST_POSTGRES_URL` names a server on which its
role may create databases; `./deploy/test` sets one up and sets the variable. The URL's
own database is only used to create and drop the per-test ones.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from lorafaas.registry.db import sync_url, upgrade

POSTGRES_URL_ENV = "LORAFAAS_TEST_POSTGRES_URL"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def postgres_server_url() -> str:
    """The test server's URL; skips the test where none is set up (fails in CI)."""
    url = os.environ.get(POSTGRES_URL_ENV, "")
    if url:
        return url
    reason = f"{POSTGRES_URL_ENV} is not set: run ./deploy/test, which sets up PostgreSQL"
    if os.environ.get("CI"):
        # In CI a skipped half would pass unnoticed: the server must be there.
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """Create an empty database `lorafaas_t_<random>`, yield its URL, then drop it."""
    name = f"lorafaas_t_{uuid.uuid4().hex[:12]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_engine(sync_url(server_url), isolation_level="AUTOCOMMIT",
                          poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            _drop_database(admin, name)
    finally:
        admin.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    # A connection a test leaked would make DROP DATABASE fail: end it first. Only our
    # role's own: an autovacuum worker in the database runs as the superuser, which this
    # role may not signal, and DROP DATABASE stops autovacuum workers itself.
    with admin.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = :name AND pid <> pg_backend_pid() "
                                "AND usename = current_user"),
                           {"name": name})
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (no tables), once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
        return
    with fresh_postgres_database(postgres_server_url()) as url:
        yield url


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """The URL of a registry database migrated to head, once per backend."""
    upgrade(empty_database_url)
    return empty_database_url
