"""The registry's database: async engine and session factory, and Alembic migrations.

SQLite runs in write-ahead-log mode with `synchronous=FULL`: a commit is on disk when it
returns (one fsync of the log, where the rollback journal took several), as PostgreSQL's
is by default. `commit_unsynced` opens a transaction whose commit does not wait for the
disk, for writes that a crash of the platform (`kill -9`) must not lose but a crash of the
machine may: the process's writes are in the operating system's hands when it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
# Each dialect's INSERT that has on_conflict_do_update.
_INSERTS: dict[str, Callable[[Any], Any]] = {"sqlite": sqlite.insert,
                                             "postgresql": postgresql.insert}


def async_url(url: str) -> str:
    """The URL with an asyncio driver: `sqlite` -> aiosqlite, `postgresql` -> psycopg."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The URL with a blocking driver, for Alembic."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    elif parsed.drivername in ("postgresql", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> AsyncEngine:
    """An async engine for the registry URL; SQLite files get their folder created."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(async_url(url))
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        event.listen(engine.sync_engine, "connect", _sqlite_wal)
    return engine


def _sqlite_wal(connection: Any, _record: Any) -> None:
    """Each new SQLite connection: write-ahead log, each commit synced (see the module doc)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


@contextlib.asynccontextmanager
async def commit_unsynced(sessions: async_sessionmaker[AsyncSession]
                          ) -> AsyncIterator[AsyncSession]:
    """A session in a transaction whose commit does not wait for the disk (see the module
    doc): PostgreSQL's `synchronous_commit = off` for this transaction; SQLite's
    `synchronous=NORMAL` for the connection while it runs (SQLite refuses the change inside
    a transaction, and it has none open before the first write)."""
    async with sessions() as session:
        is_sqlite = session.get_bind().dialect.name == "sqlite"
        try:
            async with session.begin():
                await session.execute(text("PRAGMA synchronous=NORMAL" if is_sqlite
                                           else "SET LOCAL synchronous_commit TO OFF"))
                yield session
        finally:
            if is_sqlite:  # the connection goes back to the pool as every other one is
                # Outside a transaction (none is open after the commit), so it applies at
                # once; closing the session ends the one SQLAlchemy begins for it.
                await session.execute(text("PRAGMA synchronous=FULL"))


def make_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """A session factory whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def dialect_insert(session: AsyncSession) -> Callable[[Any], Any]:
    """The session's dialect's `insert`, which has `on_conflict_do_update` (an upsert that
    SQLite and PostgreSQL both run atomically against a unique key)."""
    return _INSERTS[session.get_bind().dialect.name]


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """An Alembic config pointing at `migrations/` and the given database."""
    from alembic.config import Config

    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the registry to `revision` (blocking)."""
    from alembic import command

    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite") and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the registry down to `revision` (blocking)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)
