"""Sequences: an action's components, no artifact for a sequence, and a record's cause.

A sequence action (`exec.kind = "sequence"`) holds no code: its versions and its row have
no artifact digest, and its row lists its components' fully qualified names. A component's
activation record names the sequence activation that caused it (OpenWhisk's `cause`), and a
sequence's record has its own duration (OpenWhisk's: the sum of its components').

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('components', sa.JSON(), nullable=True))
        batch_op.alter_column('artifact_digest', existing_type=sa.String(length=64),
                              nullable=True)
    with op.batch_alter_table('action_versions', schema=None) as batch_op:
        batch_op.alter_column('artifact_digest', existing_type=sa.String(length=64),
                              nullable=True)
    with op.batch_alter_table('activations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cause', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('duration_ms', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # Sequences cannot be kept without their components: they go, with their versions.
    op.execute("DELETE FROM action_versions WHERE artifact_digest IS NULL")
    op.execute("DELETE FROM actions WHERE artifact_digest IS NULL")
    with op.batch_alter_table('activations', schema=None) as batch_op:
        batch_op.drop_column('duration_ms')
        batch_op.drop_column('cause')
    with op.batch_alter_table('action_versions', schema=None) as batch_op:
        batch_op.alter_column('artifact_digest', existing_type=sa.String(length=64),
                              nullable=False)
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.alter_column('artifact_digest', existing_type=sa.String(length=64),
                              nullable=False)
        batch_op.drop_column('components')
