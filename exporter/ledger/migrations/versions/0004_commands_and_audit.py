"""Commands to the orchestrators and the audit trail

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('commands',
    sa.Column('seq', SEQUENCE, autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('args', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('issued_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('delivered_at', sa.Float(), nullable=True),
    sa.Column('deliveries', sa.Integer(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    op.create_index('ix_commands_status', 'commands', ['status', 'source'], unique=False)
    op.create_table('audit',
    sa.Column('seq', SEQUENCE, autoincrement=True, nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.Text(), nullable=False),
    sa.Column('client', sa.String(length=128), nullable=False),
    sa.Column('user_agent', sa.String(length=256), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_index('ix_audit_at', 'audit', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_at', table_name='audit')
    op.drop_table('audit')
    op.drop_index('ix_commands_status', table_name='commands')
    op.drop_table('commands')
