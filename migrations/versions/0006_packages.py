"""Packages: actions in packages, and the packages table (parameters, bindings, publish).

An action's package is '' in the default package (not NULL: the unique key must hold in
SQLite and PostgreSQL alike, where NULLs never collide).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('package', sa.String(length=256), nullable=False,
                                      server_default=''))
        batch_op.drop_constraint('uq_actions_namespace_name', type_='unique')
        batch_op.create_unique_constraint('uq_actions_namespace_package_name',
                                          ['namespace_id', 'package', 'name'])
    op.create_table('packages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=32), nullable=False),
    sa.Column('binding_namespace', sa.String(length=256), nullable=True),
    sa.Column('binding_name', sa.String(length=256), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('annotations', sa.JSON(), nullable=False),
    sa.Column('publish', sa.Boolean(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['namespace_id'], ['namespaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('namespace_id', 'name', name='uq_packages_namespace_name')
    )


def downgrade() -> None:
    op.drop_table('packages')
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_constraint('uq_actions_namespace_package_name', type_='unique')
        batch_op.create_unique_constraint('uq_actions_namespace_name', ['namespace_id', 'name'])
        batch_op.drop_column('package')
