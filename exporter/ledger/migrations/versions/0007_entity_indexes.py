"""Read API at scale: entities by their id alone, and the default sorts of lists, by index

Without these, `/agents/{id}` (no source given) read every agent, and the default order of
tasks and runs sorted the whole table for each page: both grow with history. The sort indexes
are on the very expressions the read API orders by (exporter/reads/fleet.py).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

INDEXES: tuple[tuple[str, str, Sequence[str | sa.TextClause]], ...] = (
    ('ix_agents_agent_id', 'agents', ['agent_id']),
    ('ix_agents_cost', 'agents', ['cost_nano', 'source', 'agent_id']),
    ('ix_tasks_task_id', 'tasks', ['task_id']),
    ('ix_tasks_submitted_sort', 'tasks',
     [sa.text('coalesce(submitted_at, -1.0)'), 'source', 'task_id']),
    ('ix_workflow_runs_run_id', 'workflow_runs', ['run_id']),
    ('ix_workflow_runs_started_sort', 'workflow_runs',
     [sa.text('coalesce(started_at, -1.0)'), 'source', 'run_id']),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
