"""Migration 0009 (pending leases): a pending row written before has no owner, so the first
controller to claim it resumes it; undone, the lease columns go and the row stays. On SQLite
and, where set up, PostgreSQL (tests/db_fixtures.py)."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from lorafaas.registry.db import downgrade, sync_url, upgrade


def test_migration_0009_leaves_old_pending_rows_unowned_and_back(
        empty_database_url: str) -> None:
    upgrade(empty_database_url, "0008")
    engine = create_engine(sync_url(empty_database_url), poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO pending_invocations (activation_id, namespace, action, subject, "
                f"parameters, received_ms) VALUES ('{'a' * 32}', 'alice', 'a', 'alice', "
                "'{}', 1)"))
        upgrade(empty_database_url, "0009")
        with engine.begin() as connection:
            assert list(connection.execute(text(
                "SELECT activation_id, owner, lease_until_ms FROM pending_invocations"))) == [
                ("a" * 32, None, None)]
        downgrade(empty_database_url, "0008")
        columns = {c["name"] for c in inspect(engine).get_columns("pending_invocations")}
        assert "owner" not in columns and "lease_until_ms" not in columns
        with engine.begin() as connection:
            assert list(connection.execute(text(
                "SELECT count(*) FROM pending_invocations"))) == [(1,)]
    finally:
        engine.dispose()
