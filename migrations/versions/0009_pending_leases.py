"""Leases on pending invocations: the controller that runs an accepted activation holds its
row (owner and expiry, renewed while it runs); another controller resumes it only once the
lease has run out, so that exactly one of several controllers resumes each.

Rows written before have no owner: the first controller to claim them resumes them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('pending_invocations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until_ms', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_pending_invocations_lease_until_ms', ['lease_until_ms'])


def downgrade() -> None:
    with op.batch_alter_table('pending_invocations', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_invocations_lease_until_ms')
        batch_op.drop_column('lease_until_ms')
        batch_op.drop_column('owner')
