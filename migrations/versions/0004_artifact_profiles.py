"""Artifact profiles: measured load time and memory per function, artifact and tier.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('artifact_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=256), nullable=False),
    sa.Column('adapter_digest', sa.String(length=64), nullable=False),
    sa.Column('artifact', sa.String(length=16), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('load_ms', sa.Float(), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('samples', sa.Integer(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    # the upsert's conflict target: one row per key, however many starts record at once
    sa.UniqueConstraint('namespace', 'action', 'adapter_digest', 'artifact', 'tier',
                        name='uq_artifact_profiles_key')
    )


def downgrade() -> None:
    op.drop_table('artifact_profiles')
