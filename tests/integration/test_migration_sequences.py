"""Migration 0008 (sequences): a lora action survives it both ways; a sequence, which has
no artifact, is stored after it and goes, with its versions, when it is undone. On SQLite
and, where set up, PostgreSQL (tests/db_fixtures.py)."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from lorafaas.registry.db import downgrade, sync_url, upgrade

DIGEST = "a" * 64


def test_migration_0008_stores_sequences_and_takes_them_back(empty_database_url: str) -> None:
    upgrade(empty_database_url, "0005")
    engine = create_engine(sync_url(empty_database_url), poolclass=NullPool)
    columns = ("namespace_id, name, version, exec_kind, artifact_digest, parameters, "
               "annotations, limits, publish, updated_ms")
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO namespaces (id, name, created_ms) VALUES (1, 'alice', 1)"))
            connection.execute(text("INSERT INTO artifacts (digest, size_bytes, ref_count, "
                                    f"created_ms) VALUES ('{DIGEST}', 1, 1, 1)"))
            connection.execute(text(f"INSERT INTO actions (id, {columns}) VALUES (1, 1, 'a', "
                                    f"'0.0.1', 'lora', '{DIGEST}', '[]', '[]', '{{}}', "
                                    "false, 7)"))
        upgrade(empty_database_url)
        with engine.begin() as connection:
            connection.execute(text(
                f"INSERT INTO actions (id, {columns}, components) VALUES (2, 1, 's', "
                "'0.0.1', 'sequence', NULL, '[]', '[]', '{}', false, 8, '[\"/alice/a\"]')"))
            connection.execute(text(
                "INSERT INTO action_versions (action_id, version, artifact_digest, exec_kind, "
                "created_ms) VALUES (2, '0.0.1', NULL, 'sequence', 8)"))
            connection.execute(text(
                "INSERT INTO activations (activation_id, namespace, name, version, subject, "
                "start_ms, end_ms, status_code, response, logs, annotations, cause) VALUES "
                f"('{'c' * 32}', 'alice', 'a', '0.0.1', 'alice', 1, 2, 0, '{{}}', '[]', "
                f"'[]', '{'d' * 32}')"))
            assert connection.execute(text(
                "SELECT components FROM actions WHERE id = 2")).scalar_one() is not None
        downgrade(empty_database_url, "0005")
        with engine.begin() as connection:
            assert list(connection.execute(text("SELECT id, name FROM actions"))) == [(1, "a")]
            assert list(connection.execute(text("SELECT count(*) FROM action_versions "
                                                "WHERE action_id = 2"))) == [(0,)]
            assert list(connection.execute(text("SELECT count(*) FROM activations"))) == [(1,)]
    finally:
        engine.dispose()
