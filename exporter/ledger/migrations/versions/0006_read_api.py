"""Read API: events by agent, tokens per day, task text and error, the indexes lists use

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import hashlib

import orjson
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TOKEN_COLUMNS = ('input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_creation_tokens')
INDEXES = (
    ('ix_agents_task_id', 'agents', ['source', 'task_id']),
    ('ix_agents_created_at', 'agents', ['created_at']),
    ('ix_agents_last_activity', 'agents', ['last_activity']),
    ('ix_tasks_submitted_at', 'tasks', ['submitted_at']),
    ('ix_workflow_runs_started_at', 'workflow_runs', ['started_at']),
    ('ix_steps_agent_id', 'steps', ['source', 'agent_id']),
)
BACKFILL_CHUNK = 5_000


def agent_key(source: str, agent_id: str) -> int:
    """Kept equal to exporter.events.agent_key (a migration must not import the live code)."""
    digest = hashlib.blake2b(f"{source}\x1f{agent_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): the events table may hold millions of rows.
    op.add_column('events', sa.Column('agent_key', sa.BigInteger(), nullable=True))
    for name in ('description', 'error'):
        op.add_column('tasks', sa.Column(name, sa.Text(), nullable=True))
    for name in TOKEN_COLUMNS:
        op.add_column('daily_cost', sa.Column(name, sa.BigInteger(), nullable=False,
                                              server_default='0'))
    _backfill_agent_keys()
    op.create_index('ix_events_agent_key', 'events', ['agent_key', 'seq'],
                    sqlite_where=sa.text('agent_key IS NOT NULL'),
                    postgresql_where=sa.text('agent_key IS NOT NULL'))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def _backfill_agent_keys() -> None:
    connection = op.get_bind()
    events = sa.table('events', sa.column('seq', sa.BigInteger), sa.column('source', sa.String),
                      sa.column('payload', sa.LargeBinary),
                      sa.column('agent_key', sa.BigInteger))
    after = 0
    while True:
        rows = connection.execute(sa.select(events.c.seq, events.c.source, events.c.payload)
                                  .where(events.c.seq > after).order_by(events.c.seq)
                                  .limit(BACKFILL_CHUNK)).all()
        if not rows:
            return
        keys = []
        for seq, source, payload in rows:
            stored = orjson.loads(payload)
            # Canonical events are stored as sent, so with either accepted spelling.
            agent_id = stored.get('agent_id', stored.get('agentId')) \
                if isinstance(stored, dict) else None
            if isinstance(agent_id, str):
                keys.append({'s': seq, 'k': agent_key(source, agent_id)})
        if keys:
            connection.execute(events.update().where(events.c.seq == sa.bindparam('s'))
                               .values(agent_key=sa.bindparam('k')), keys)
        after = rows[-1][0]


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_index('ix_events_agent_key', table_name='events')
    with op.batch_alter_table('daily_cost', schema=None) as batch_op:
        for name in TOKEN_COLUMNS:
            batch_op.drop_column(name)
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_column('description')
        batch_op.drop_column('error')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('agent_key')
