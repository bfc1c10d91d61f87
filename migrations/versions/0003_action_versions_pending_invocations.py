"""Action versions (each holds an artifact reference) and pending invocations.

Every existing action gets one version row, its current one, which takes over the artifact
reference the action held. Downgrading recounts the references from the actions alone and
deletes the artifact rows no action uses (their files stay in the store).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('action_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('action_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('artifact_digest', sa.String(length=64), nullable=False),
    sa.Column('exec_kind', sa.String(length=32), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['actions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['artifact_digest'], ['artifacts.digest'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('action_versions', schema=None) as batch_op:
        batch_op.create_index('ix_action_versions_action', ['action_id'], unique=False)
    op.execute("INSERT INTO action_versions (action_id, version, artifact_digest, exec_kind, "
               "created_ms) SELECT id, version, artifact_digest, exec_kind, updated_ms "
               "FROM actions ORDER BY id")

    op.create_table('pending_invocations',
    sa.Column('activation_id', sa.String(length=32), nullable=False),
    sa.Column('namespace', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=256), nullable=False),
    sa.Column('subject', sa.String(length=256), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('received_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('activation_id')
    )


def downgrade() -> None:
    op.drop_table('pending_invocations')
    with op.batch_alter_table('action_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_action_versions_action')
    op.drop_table('action_versions')
    op.execute("UPDATE artifacts SET ref_count = (SELECT count(*) FROM actions "
               "WHERE actions.artifact_digest = artifacts.digest)")
    op.execute("DELETE FROM artifacts WHERE ref_count = 0")
