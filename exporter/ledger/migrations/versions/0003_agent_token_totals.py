"""Agents: tokens counted so far by type, the base that running totals are compared with

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

COLUMNS = ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_creation_tokens')


def upgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False,
                                          server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.drop_column(name)
