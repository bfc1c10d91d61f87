"""Triggers, rules, alarms (the periodic feed) and the alarm ticks that elect one firing each.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('triggers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('annotations', sa.JSON(), nullable=False),
    sa.Column('limits', sa.JSON(), nullable=False),
    sa.Column('publish', sa.Boolean(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['namespace_id'], ['namespaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('namespace_id', 'name', name='uq_triggers_namespace_name')
    )
    op.create_table('rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('trigger_path', sa.String(length=256), nullable=False),
    sa.Column('trigger_name', sa.String(length=256), nullable=False),
    sa.Column('action_path', sa.String(length=520), nullable=False),
    sa.Column('action_name', sa.String(length=256), nullable=False),
    sa.Column('trigger_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('annotations', sa.JSON(), nullable=False),
    sa.Column('publish', sa.Boolean(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['namespace_id'], ['namespaces.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trigger_id'], ['triggers.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('namespace_id', 'name', name='uq_rules_namespace_name')
    )
    op.create_index('ix_rules_trigger', 'rules', ['trigger_id'])
    op.create_table('alarms',
    sa.Column('trigger_id', sa.Integer(), nullable=False),
    sa.Column('namespace', sa.String(length=256), nullable=False),
    sa.Column('subject', sa.String(length=256), nullable=False),
    sa.Column('feed', sa.String(length=64), nullable=False),
    sa.Column('cron', sa.String(length=256), nullable=True),
    sa.Column('minutes', sa.Integer(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('start_ms', sa.BigInteger(), nullable=True),
    sa.Column('stop_ms', sa.BigInteger(), nullable=True),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['trigger_id'], ['triggers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('trigger_id')
    )
    # One row per (alarm, tick): the controller whose INSERT lands fires that tick.
    op.create_table('alarm_ticks',
    sa.Column('trigger_id', sa.Integer(), nullable=False),
    sa.Column('tick_ms', sa.BigInteger(), nullable=False),
    sa.Column('fired_by', sa.String(length=64), nullable=False),
    sa.Column('fired_ms', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('trigger_id', 'tick_ms')
    )
    op.create_index('ix_alarm_ticks_tick', 'alarm_ticks', ['tick_ms'])


def downgrade() -> None:
    op.drop_index('ix_alarm_ticks_tick', table_name='alarm_ticks')
    op.drop_table('alarm_ticks')
    op.drop_table('alarms')
    op.drop_index('ix_rules_trigger', table_name='rules')
    op.drop_table('rules')
    op.drop_table('triggers')
