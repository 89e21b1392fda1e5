"""The ledger's tables. Alembic migrations create them; this module names them for queries."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# Indexes created on PostgreSQL only (the migrations and the schema test honour this too).
POSTGRESQL_ONLY: frozenset[str] = frozenset({"ix_events_id_hash"})

NAME = 128
# SQLite makes INTEGER PRIMARY KEY the rowid: appends stay at the end of the B-tree.
SEQUENCE = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events", metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    # 64-bit hash of the idempotency key: a compact unique index instead of one on long strings.
    Column("id_hash", BigInteger, nullable=True),
    Column("event_id", String(NAME), nullable=True),
    Column("source", String(NAME), nullable=False),
    Column("type", String(32), nullable=False),
    Column("ts", Float, nullable=False),
    Column("received", Float, nullable=False),
    # agent_key(source, agent_id) of an event naming an agent: its events, in order, by index.
    Column("agent_key", BigInteger, nullable=True),
    Column("payload", LargeBinary, nullable=False),
    Index("ix_events_agent_key", "agent_key", "seq",
          sqlite_where=text("agent_key IS NOT NULL"),
          postgresql_where=text("agent_key IS NOT NULL")),
    # PostgreSQL only: on SQLite a unique index on random hashes dirties a page per event at
    # every commit; SQLite uses `event_ids` instead (see ledger/dedup.py).
    Index("ix_events_id_hash", "id_hash", unique=True).ddl_if(dialect="postgresql"),
)

# SQLite's set of stored idempotency-key hashes, written in sorted runs (empty on PostgreSQL).
event_ids = Table(
    "event_ids", metadata,
    Column("id_hash", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# The last event whose hash `event_ids` holds; the ones after it are kept in memory.
event_ids_merged = Table(
    "event_ids_merged", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
)

# The state's aggregates are written as a checkpoint that names the last event they include;
# a restart loads them and applies only the events after it.
checkpoint = Table(
    "checkpoint", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("applied_seq", BigInteger, nullable=False),
)

counters = Table(
    "counters", metadata,
    Column("key", Text, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

histograms = Table(
    "histograms", metadata,
    Column("key", Text, primary_key=True),
    Column("buckets", Text, nullable=False),
    Column("sum", Float, nullable=False),
    Column("count", BigInteger, nullable=False),
)

daily_cost = Table(
    "daily_cost", metadata,
    Column("day", Integer, primary_key=True),
    Column("source", String(NAME), primary_key=True),
    Column("role", String(NAME), primary_key=True),
    Column("model", String(NAME), primary_key=True),
    Column("task_type", String(NAME), primary_key=True),
    Column("workflow", String(NAME), primary_key=True),
    Column("cost_nano", BigInteger, nullable=False),
    # Tokens by type on that day (migration 0006; days before it hold 0).
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_creation_tokens", BigInteger, nullable=False, server_default="0"),
)

label_values = Table(
    "label_values", metadata,
    Column("label", String(32), primary_key=True),
    Column("value", String(NAME), primary_key=True),
)

agents = Table(
    "agents", metadata,
    Column("source", String(NAME), primary_key=True),
    Column("agent_id", String(NAME), primary_key=True),
    Column("role", String(NAME), nullable=False),
    Column("model", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("task_id", String(NAME), nullable=True),
    Column("task_type", String(NAME), nullable=False),
    Column("workflow", String(NAME), nullable=False),
    Column("context_tokens", BigInteger, nullable=False),
    Column("context_limit", BigInteger, nullable=False),
    Column("cost_nano", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("last_activity", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("deleted", Boolean, nullable=False),
    # Tokens counted so far by type: what running totals are compared with (state.py).
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_creation_tokens", BigInteger, nullable=False, server_default="0"),
    Index("ix_agents_deleted", "deleted"),
    Index("ix_agents_task_id", "source", "task_id"),
    Index("ix_agents_created_at", "created_at"),
    Index("ix_agents_last_activity", "last_activity"),
    Index("ix_agents_agent_id", "agent_id"),
    Index("ix_agents_cost", "cost_nano", "source", "agent_id"),
)

tasks = Table(
    "tasks", metadata,
    Column("source", String(NAME), primary_key=True),
    Column("task_id", String(NAME), primary_key=True),
    Column("task_type", String(NAME), nullable=False),
    Column("complexity", String(16), nullable=True),
    Column("analyst", Boolean, nullable=True),
    Column("mode", String(16), nullable=True),
    Column("status", String(16), nullable=False),
    Column("submitted_at", Float, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("cost_nano", BigInteger, nullable=False),
    Column("has_analyst_agent", Boolean, nullable=False),
    Column("description", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_tasks_ended_at", "ended_at"),
    Index("ix_tasks_submitted_at", "submitted_at"),
    Index("ix_tasks_task_id", "task_id"),
    # The read API's default order (exporter/reads/fleet.py), on the same expression.
    Index("ix_tasks_submitted_sort", text("coalesce(submitted_at, -1.0)"), "source", "task_id"),
)

workflow_runs = Table(
    "workflow_runs", metadata,
    Column("source", String(NAME), primary_key=True),
    Column("run_id", String(NAME), primary_key=True),
    Column("workflow", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("steps", Text, nullable=False),
    Index("ix_workflow_runs_ended_at", "ended_at"),
    Index("ix_workflow_runs_started_at", "started_at"),
    Index("ix_workflow_runs_run_id", "run_id"),
    Index("ix_workflow_runs_started_sort", text("coalesce(started_at, -1.0)"), "source",
          "run_id"),
)

steps = Table(
    "steps", metadata,
    Column("source", String(NAME), primary_key=True),
    Column("run_id", String(NAME), primary_key=True),
    Column("step_id", String(NAME), primary_key=True),
    Column("step", String(NAME), nullable=False),
    Column("agent", String(NAME), nullable=False),
    Column("agent_id", String(NAME), nullable=True),
    Column("status", String(16), nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("retries", Integer, nullable=False),
    Index("ix_steps_agent_id", "source", "agent_id"),
)

# Commands to the orchestrators (exporter/control): their whole life, durable.
commands = Table(
    "commands", metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    # The orchestrator instance it is for (target.source, default `default`): its poller.
    Column("source", String(NAME), nullable=False),
    Column("target", Text, nullable=False),
    Column("args", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(NAME), nullable=True, unique=True),
    Column("issued_by", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
    Column("deliveries", Integer, nullable=False),
    Column("finished_at", Float, nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_commands_status", "status", "source"),
)

# Who did what to the fleet or the exporter, appended and never changed.
audit = Table(
    "audit", metadata,
    Column("seq", SEQUENCE, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("token", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", Text, nullable=False),
    Column("client", String(128), nullable=False),
    Column("user_agent", String(256), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=True),
    Index("ix_audit_at", "at"),
)

# Budgets made at runtime (PUT /api/v1/budgets): merged with the config file's.
runtime_budgets = Table(
    "runtime_budgets", metadata,
    Column("name", String(NAME), primary_key=True),
    Column("limit_usd", Float, nullable=False),
    Column("period", String(16), nullable=False),
    Column("scope", Text, nullable=False),
    Column("on_exceed", String(16), nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", Float, nullable=False),
)
