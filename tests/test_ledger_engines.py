"""The ledger's two SQLite engines: the writer's and the readers'.

Readers must never take the write lock (a deferred, query-only transaction reads a WAL
snapshot), and a checkpoint, committed without waiting for the disk, must leave the pooled
connection as durable as it found it for the ingest writer that may use it next.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Final

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, text
from sqlalchemy.exc import IntegrityError, OperationalError

from exporter.events import validate_batch
from exporter.ledger import Ledger, make_engine, make_read_engine, migrate, schema
from exporter.ledger.store import Part, RowGroup
from exporter.reads.fleet import AgentFilter, FleetReads, Reading, RunFilter, TaskFilter
from exporter.reads.pages import Sort
from exporter.reads.pending import ENTITY_TABLES, Pending


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate(engine)
    return Ledger(engine, make_read_engine(url, engine))


def _write(ledger: Ledger, *ids: str) -> None:
    events, problems = validate_batch(
        [{"type": "log.entry", "id": event_id, "level": "info", "message": event_id}
         for event_id in ids], time.time())
    assert problems == []
    ledger.write_events([Part(events, time.time())])


def _count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM events")).scalar_one())


def test_the_reader_may_not_write(ledger: Ledger) -> None:
    assert ledger.reader is not ledger.engine
    with ledger.reader.connect() as connection, pytest.raises(OperationalError,
                                                             match="readonly"):
        connection.execute(text("DELETE FROM events"))


def test_an_open_read_neither_blocks_the_writer_nor_sees_its_later_commits(
        ledger: Ledger) -> None:
    _write(ledger, "a")
    with ledger.reader.connect() as reading:
        assert reading.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
        # Under BEGIN IMMEDIATE this read would hold the write lock: the write would wait 30 s
        # for it and then fail with "database is locked".
        _write(ledger, "b", "c")
        assert reading.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
    assert _count(ledger.reader) == 3
    assert [row[0] for row in ledger.events_after(0, 10)] == [1, 2, 3]


def _pooled_levels(engine: Engine, count: int = 4) -> list[int]:
    """PRAGMA synchronous of as many connections as the pool holds at once."""
    connections = [engine.connect() for _ in range(count)]
    try:
        return [int(connection.connection.driver_connection.execute(  # type: ignore[union-attr]
            "PRAGMA synchronous").fetchone()[0]) for connection in connections]
    finally:
        for connection in connections:
            connection.close()


def test_checkpoints_never_hand_a_connection_that_does_not_wait_to_the_pool(
        ledger: Ledger) -> None:
    ledger.write_checkpoint([RowGroup(schema.checkpoint, ("id",), "update", [(1, 7)])])
    _write(ledger, "a")
    assert _pooled_levels(ledger.engine) == [2, 2, 2, 2]  # FULL, the ingest writer's too
    with ledger.reader.connect() as connection:
        assert connection.execute(
            text("SELECT applied_seq FROM checkpoint WHERE id = 1")).scalar_one() == 7


def test_a_checkpoint_whose_commit_fails_leaves_no_such_connection_behind(
        ledger: Ledger) -> None:
    # A deferred constraint fails at COMMIT, which leaves SQLite's transaction open.
    with ledger.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        connection.exec_driver_sql("CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER "
                                   "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
    child = Table("child", MetaData(), Column("id", Integer, primary_key=True),
                  Column("parent", Integer))
    with pytest.raises(IntegrityError):
        ledger.write_checkpoint([RowGroup(child, ("id",), "update", [(1, 99)])])
    assert _pooled_levels(ledger.engine) == [2, 2, 2, 2]
    ledger.write_checkpoint([RowGroup(schema.checkpoint, ("id",), "update", [(1, 8)])])
    _write(ledger, "a")  # the writer, and the next checkpoint, work on
    assert _pooled_levels(ledger.engine) == [2, 2, 2, 2]
    assert _count(ledger.reader) == 1


def test_memory_databases_read_through_the_writer() -> None:
    engine = make_engine("sqlite://")
    assert make_read_engine("sqlite://", engine) is engine


def _pending_row(table: Table) -> tuple[Any, ...]:
    """A row of `table` that no stored row has."""
    values: list[Any] = []
    for each in table.columns:
        python = each.type.python_type
        text = "[]" if each.name == "steps" else "pending"  # a run's planned steps are JSON
        values.append(text if python is str else python())
    return tuple(values)


PENDING: Final = Pending({name: [_pending_row(table)] for name, table in ENTITY_TABLES.items()})


@pytest.mark.parametrize("pending", [None, PENDING], ids=["stored", "pending"])
@pytest.mark.parametrize(("read", "index"), [
    (lambda reads: reads.runs(RunFilter(), Sort("started", True), None, 50),
     "ix_workflow_runs_started_sort"),
    (lambda reads: reads.tasks(TaskFilter(status="failed"), Sort("submitted", True), None, 50),
     "ix_tasks_submitted_sort"),
    (lambda reads: reads.agents(AgentFilter(), Sort("cost", True), None, 50), "ix_agents_cost"),
    (lambda reads: reads.agent("a-1", None), "ix_agents_agent_id"),
    (lambda reads: reads.task("t-1", None), "ix_tasks_task_id"),
    (lambda reads: reads.run("r-1", None), "ix_workflow_runs_run_id"),
])
def test_the_read_api_orders_and_finds_by_index(ledger: Ledger, read: Any, index: str,
                                                pending: Pending | None) -> None:
    """SQLite's planner uses an expression index only for the very same expression, and
    Alembic cannot compare such indexes: what the read API sends is checked here, with rows
    pending (laid over the stored ones, exporter/reads/pending.py) and without."""
    statements: list[tuple[str, Any]] = []

    def capture(_connection: Any, _cursor: Any, statement: str, parameters: Any,
                _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(ledger.reader, "before_cursor_execute", capture)
    reading = Reading() if pending is None else Reading(pending=lambda: pending)
    read(FleetReads(ledger.reader, reading))
    plans = []
    with ledger.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver is not None
        for statement, parameters in statements:
            plans += [row[-1] for row in driver.execute(
                "EXPLAIN QUERY PLAN " + statement, parameters).fetchall()]
    assert any(index in step for step in plans), plans
    # Lists lay the pending rows over the stored ones in SQL; lookups match them in Python.
    is_list = index.endswith(("_sort", "_cost"))
    assert (pending is not None and is_list) == any(
        "pending_" in statement for statement, _ in statements)


def test_the_writers_page_cache_is_the_configured_size(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}", sqlite_cache_mib=8)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA cache_size")).scalar_one() == -8 * 1024
