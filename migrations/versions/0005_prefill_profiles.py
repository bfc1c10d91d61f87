"""Prefill profiles: the fitted T(b) per backbone, runtime image, machine, rank and prompt length.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prefill_profiles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('backbone', sa.String(length=256), nullable=False),
    sa.Column('backbone_digest', sa.String(length=64), nullable=False),
    sa.Column('image', sa.String(length=128), nullable=False),
    sa.Column('machine', sa.String(length=512), nullable=False),
    sa.Column('adapter_rank', sa.Integer(), nullable=False),
    sa.Column('prompt_length', sa.Integer(), nullable=False),
    sa.Column('t0_ms', sa.Float(), nullable=False),
    sa.Column('alpha_ms', sa.Float(), nullable=False),
    sa.Column('r2', sa.Float(), nullable=False),
    sa.Column('samples', sa.JSON(), nullable=False),
    sa.Column('measured_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    # the upsert's conflict target, and the index that reads a key's profiles
    sa.UniqueConstraint('backbone', 'backbone_digest', 'image', 'machine', 'adapter_rank',
                        'prompt_length', name='uq_prefill_profiles_key')
    )


def downgrade() -> None:
    op.drop_table('prefill_profiles')
