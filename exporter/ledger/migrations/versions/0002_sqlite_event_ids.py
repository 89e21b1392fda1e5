"""SQLite: idempotency keys in sorted runs instead of a unique index on events

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_ids',
    sa.Column('id_hash', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id_hash'),
    sqlite_with_rowid=False
    )
    op.create_table('event_ids_merged',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    if op.get_bind().dialect.name != 'sqlite':
        return
    op.execute('INSERT INTO event_ids (id_hash, seq) SELECT id_hash, seq FROM events '
               'WHERE id_hash IS NOT NULL ORDER BY id_hash')
    op.execute('INSERT INTO event_ids_merged (id, seq) '
               'SELECT 1, coalesce(max(seq), 0) FROM events')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_id_hash')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('events', schema=None) as batch_op:
            batch_op.create_index('ix_events_id_hash', ['id_hash'], unique=True)
    op.drop_table('event_ids_merged')
    op.drop_table('event_ids')
