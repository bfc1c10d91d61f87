"""Usage records: metered activations and platform overhead, for billing and reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('usage_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('namespace', sa.String(length=256), nullable=False),
    sa.Column('action', sa.String(length=256), nullable=True),
    sa.Column('activation_id', sa.String(length=32), nullable=True),
    sa.Column('start_ms', sa.BigInteger(), nullable=False),
    sa.Column('end_ms', sa.BigInteger(), nullable=False),
    sa.Column('start_kind', sa.String(length=16), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('accelerator_s', sa.Float(), nullable=False),
    sa.Column('gb_s', sa.Float(), nullable=False),
    sa.Column('accelerator_kind', sa.String(length=16), nullable=False),
    sa.Column('cost_accelerator', sa.Float(), nullable=False),
    sa.Column('cost_memory', sa.Float(), nullable=False),
    sa.Column('cost_prompt', sa.Float(), nullable=False),
    sa.Column('cost_completion', sa.Float(), nullable=False),
    sa.Column('cost_total', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('activation_id')
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.create_index('ix_usage_records_namespace_start', ['namespace', 'start_ms'],
                              unique=False)
        batch_op.create_index('ix_usage_records_start', ['start_ms'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_records_start')
        batch_op.drop_index('ix_usage_records_namespace_start')
    op.drop_table('usage_records')
