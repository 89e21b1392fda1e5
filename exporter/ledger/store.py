"""Reading and writing the ledger: raw events, entities and the aggregates behind every counter.

Writes happen in one transaction per group of batches: the events, the state they changed and the
counters they moved commit together or not at all. Reads happen at start (`load_snapshot`).
"""

from __future__ import annotations

import operator
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, TypeVar

import orjson
from sqlalchemy import Connection, Engine, Table, func, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement

from exporter.budgets import window_start_day
from exporter.config import Budget
from exporter.events import Event
from exporter.fairlock import FairLock
from exporter.ledger import bulk, schema
from exporter.ledger.dedup import MERGED, IdSet
from exporter.rows import EVENT_COLUMNS, event_keys, event_row
from exporter.rows import PreparedRows as PreparedRows  # re-exported for the ledger's callers
from exporter.rows import event_rows as event_rows
from exporter.series import LABEL_SEPARATOR, Histogram
from exporter.state import (
    DELETED_AGENT_MEMORY,
    ENDED_MEMORY,
    Agent,
    Changes,
    Run,
    Snapshot,
    Step,
    Task,
)

EntityT = TypeVar("EntityT", Agent, Task, Step)

_IN_CHUNK: Final = 5_000
# A NULL type fails the NOT NULL constraint, which undoes the whole statement: how the single
# statement of `Ledger._append` refuses a group holding an id already merged into event_ids.
_UNLESS_MERGED: Final = ("CASE WHEN " + MERGED.format(key="value->>0")
                         + " THEN NULL ELSE {value} END")
DAILY_COST_KEYS: Final = ("day", "source", "role", "model", "task_type", "workflow")
DUPLICATES_KEY: Final = "orchestrator_exporter_events_duplicate_total" + LABEL_SEPARATOR


@dataclass(frozen=True, slots=True)
class Part:
    """Events of one batch to write, received at `received`, with their rows if prepared."""

    events: Sequence[Event]
    received: float
    rows: PreparedRows | None = None


class Written(NamedTuple):
    """What a write stored: per event whether it was new, the last seq, and the seq of the first
    new event when the new events hold `first_seq`..`last_seq` in their order (else None: a
    sequence with gaps, or a hash collision stored out of order; the ledger then tells)."""

    fresh: list[bool]
    last_seq: int
    first_seq: int | None


def _in_order(fresh: list[bool], last_seq: int) -> Written:
    return Written(fresh, last_seq, last_seq - sum(fresh) + 1)


@dataclass(frozen=True, slots=True)
class RowGroup:
    """Rows of one table, in its columns' order, and what a row whose `keys` exist does:
    "update" takes the new values, "add" adds them, "skip" keeps the stored row."""

    table: Table
    keys: tuple[str, ...]
    on_conflict: Literal["update", "add", "skip"]
    rows: list[tuple[Any, ...]]


class Ledger:
    """The durable store behind the exporter; one writer thread uses it at a time."""

    def __init__(self, engine: Engine, reader: Engine | None = None) -> None:
        self.engine = engine
        # What reads without writing goes through (engine.make_read_engine); the writer's engine
        # when none is given.
        self.reader = reader if reader is not None else engine
        # The ingest writer and the checkpoint, the process's two busy writers, take turns on
        # this lock rather than on SQLite's: a writer waiting for SQLite's lock polls it with
        # sleeps of up to 100 ms, one waiting here wakes as soon as the other commits (and the
        # ingest writer, which commits back to back, lets it in: `FairLock.let_waiting_in`).
        self.gate = FairLock()
        self.dialect = engine.dialect.name
        self.bulk = self.dialect == "sqlite"
        # SQLite: the writer's view of the stored ids (see ledger/dedup.py).
        self._ids = IdSet()
        self._writer: Connection | None = None
        self._checkpointer: Connection | None = None  # see write_checkpoint
        # SQLite: the last stored seq as the writer knows it (None: ask the database).
        self._last: int | None = None
        if self.bulk:
            bulk.check_sqlite_version()
            self._insert_events = bulk.insert_sql("events", EVENT_COLUMNS, sliced=True)
            self._append_events = bulk.insert_sql("events", EVENT_COLUMNS, sliced=True,
                                                  expressions={"type": _UNLESS_MERGED})
        else:
            self._insert_events = (
                f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))}) "
                "ON CONFLICT (id_hash) DO NOTHING")
        # executemany's row count is exact only where the driver says so (psycopg: yes).
        self._exact_rowcount = engine.dialect.supports_sane_multi_rowcount
        self._statements: dict[tuple[str, str], Insert | str] = {}

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def probe_write(self) -> None:
        """Raises while the database refuses writes: a row large enough to need new pages is
        written and rolled back (a full disk refuses the pages, a read-only database the row).
        """
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(schema.audit.insert().values(
                    at=0.0, token="probe", action="probe", target="{}", client="",
                    user_agent="", outcome="probe", detail="0" * 65_536))
            finally:
                transaction.rollback()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._drop_checkpointer()
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()

    # -- writing -----------------------------------------------------------------------------

    def write_events(self, parts: Sequence[Part]) -> Written:
        """Store the events whose id is new and count the others as duplicates, in one
        transaction; per event (of all parts, in order) whether it was new, and the last seq."""
        with self.gate:
            return self._write_events(parts)

    def _write_events(self, parts: Sequence[Part]) -> Written:
        events = [event for part in parts for event in part.events]
        if self.bulk:
            appended = self._append(parts, events)
            if appended is not None:
                return appended
        with self.writing() as connection:
            written = self.insert_events(connection, events, parts[0].received)
            duplicates = Counter(event.type for event, is_new
                                 in zip(events, written.fresh, strict=True) if not is_new)
            if duplicates:
                self.add_duplicates(connection, duplicates)
        self._last = written.last_seq if self.bulk else None
        return written

    def _append(self, parts: Sequence[Part], events: list[Event]) -> Written | None:
        """SQLite's common case, no id seen before, as one statement that is its own transaction.

        Every SQLite call releases the GIL, and taking it back waits for the applier or the
        event loop to yield it, up to the 5 ms switch interval: the general path's five calls
        per group (begin, last seq, lookup, insert, commit) cost more waiting than working.
        None when an id may be known: the statement then failed whole, nothing was stored, and
        the general path decides event by event.
        """
        connection = self._writer_connection()  # first: it loads the recent keys
        hashes = event_keys(events)
        if not self._ids.unseen_in_memory(hashes):
            return None
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        try:
            if self._last is None:
                self._last = _last_seq(connection)
                connection.rollback()
            driver.execute(self._append_events, bulk.join_sliced([
                part.rows or event_rows(part.events, part.received) for part in parts]))
        except sqlite3.IntegrityError:  # an id in event_ids (see _UNLESS_MERGED)
            return None
        except BaseException:
            self._last = None
            self._drop_writer()
            raise
        before, self._last = self._last, self._last + len(events)
        self._ids.stage(hashes, before + 1)
        self._ids.commit()
        self._ids.merge_if_due(connection)
        return _in_order([True] * len(events), self._last)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction of the ingest writer (one thread at a time); commits on exit."""
        if not self.bulk:
            with self.engine.begin() as connection:
                yield connection
            return
        connection = self._writer_connection()
        self._last = None  # whoever stores through this knows the last seq, not the ledger
        try:
            with connection.begin():
                yield connection
        except BaseException:
            self._ids.discard()
            self._last = None
            self._drop_writer()
            raise
        self._ids.commit()
        self._ids.merge_if_due(connection)

    def _drop_writer(self) -> None:
        """The connection may be unusable; the next write opens and loads a new one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def open_writer(self) -> None:
        """Open the ingest writer's connection now, at start: on SQLite it loads the
        idempotency keys stored since the last merge (up to a million), which holds the GIL
        for a second or more; at the first write it stalled every request in flight."""
        if self.bulk:
            self._writer_connection()

    def _writer_connection(self) -> Connection:
        if self._writer is None:
            connection = self.engine.connect()
            self._ids.load(connection)
            self._writer = connection
        return self._writer

    def insert_events(self, connection: Connection, events: Sequence[Event],
                      received: float) -> Written:
        """Store the events whose id is new; per event whether it was new, and the last seq."""
        hashes = event_keys(events)
        before = _last_seq(connection)
        if self.bulk:
            return self._insert_new(connection, events, hashes, before, received)
        result = connection.exec_driver_sql(self._insert_events, [
            event_row(event, received) for event in events])
        if self._exact_rowcount and result.rowcount == len(events):
            return _in_order([True] * len(events), before + len(events))
        fresh = self._resolve_duplicates(connection, events, hashes, before, received)
        # PostgreSQL's sequence advanced for the refused rows too: the new ones have gaps.
        return Written(fresh, _last_seq(connection), None)

    def _insert_new(self, connection: Connection, events: Sequence[Event],
                    hashes: list[int | None], before: int,
                    received: float) -> Written:
        """SQLite: decide which events are new from the writer's key set, store only those."""
        known = self._ids.known(connection, [hash_ for hash_ in hashes if hash_ is not None])
        stored_ids = self._event_ids(connection, set(known.values())) if known else {}
        fresh: list[bool] = []
        batch_ids: dict[int, str | None] = {}
        collisions: list[int] = []
        for index, (hash_, event) in enumerate(zip(hashes, events, strict=True)):
            if hash_ is None:
                fresh.append(True)
                continue
            # An id whose event was pruned (retention) keeps its hash in event_ids, not its text:
            # the hash alone says it was seen.
            earlier = stored_ids.get(known[hash_], event.id) if hash_ in known \
                else batch_ids.get(hash_, event.id)
            if earlier != event.id:  # two ids share one 64-bit hash
                collisions.append(index)
            fresh.append(hash_ not in known and hash_ not in batch_ids and earlier == event.id)
            batch_ids.setdefault(hash_, event.id)
        new = [event for event, is_new in zip(events, fresh, strict=True) if is_new]
        if new:
            connection.exec_driver_sql(self._insert_events, event_rows(new, received))
        # One statement appends its rows in order after the last seq (one writer).
        self._ids.stage([hash_ for hash_, is_new in zip(hashes, fresh, strict=True) if is_new],
                        before + 1)
        for index in collisions:
            fresh[index] = self._store_collision(connection, events[index], received)
        if collisions:  # stored after the others, out of the events' order
            return Written(fresh, _last_seq(connection), None)
        return _in_order(fresh, before + len(new))

    @staticmethod
    def _event_ids(connection: Connection, seqs: set[int]) -> dict[int, str | None]:
        column = schema.events.c
        found: dict[int, str | None] = {}
        ordered = sorted(seqs)
        for start in range(0, len(ordered), _IN_CHUNK):
            query = select(column.seq, column.event_id).where(
                column.seq.in_(ordered[start:start + _IN_CHUNK]))
            found.update({row[0]: row[1] for row in connection.execute(query)})
        return found

    def add_duplicates(self, connection: Connection, counts: dict[str, int]) -> None:
        """Duplicates store no event, so their counter is added to in the acknowledging commit."""
        self.write_rows(connection, RowGroup(schema.counters, ("key",), "add", [
            (DUPLICATES_KEY + event_type, count) for event_type, count in counts.items()]))

    def events_after(self, seq: int, limit: int) -> list[tuple[int, float, bytes]]:
        """Stored events after `seq`, in order: (seq, received, payload)."""
        column = schema.events.c
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(column.seq, column.received, column.payload)
                .where(column.seq > seq).order_by(column.seq).limit(limit)).all()
        return [(row[0], row[1], bytes(row[2])) for row in rows]

    def _resolve_duplicates(self, connection: Connection, events: Sequence[Event],
                            hashes: list[int | None], before: int, received: float) -> list[bool]:
        """Some ids were already stored (or repeated within the batch): find out which."""
        wanted = sorted({hash_ for hash_ in hashes if hash_ is not None})
        stored: dict[int, tuple[int, str | None]] = {}
        column = schema.events.c
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start:start + _IN_CHUNK]
            query = select(column.id_hash, column.seq, column.event_id).where(
                column.id_hash.in_(chunk))
            stored.update({row[0]: (row[1], row[2]) for row in connection.execute(query)})
        fresh: list[bool] = []
        claimed: set[int] = set()
        for hash_, event in zip(hashes, events, strict=True):
            if hash_ is None:
                fresh.append(True)
                continue
            seq, stored_id = stored[hash_]
            if stored_id == event.id:
                is_new = seq > before and hash_ not in claimed
                claimed.add(hash_)
                fresh.append(is_new)
            else:
                fresh.append(self._store_collision(connection, event, received))
        return fresh

    def _store_collision(self, connection: Connection, event: Event, received: float) -> bool:
        """Two ids share one 64-bit hash: find the id by value (a scan, never seen in practice)."""
        column = schema.events.c
        exists = connection.execute(
            select(column.seq).where(column.event_id == event.id).limit(1)).first()
        if exists is not None:
            return False
        row = dict(zip(EVENT_COLUMNS, event_row(event, received), strict=True))
        connection.execute(schema.events.insert().values({**row, "id_hash": None}))
        return True

    def prepare_checkpoint(self, changes: Changes, applied_seq: int) -> list[RowGroup]:
        """The rows of a checkpoint, copied now: the entities go on changing after the call."""
        groups = [
            RowGroup(schema.counters, ("key",), "update", list(changes.counters.items())),
            RowGroup(schema.histograms, ("key",), "update", [
                (key, orjson.dumps(histogram.buckets).decode(), histogram.sum, histogram.count)
                for key, histogram in changes.histograms.items()]),
            RowGroup(schema.agents, ("source", "agent_id"), "update",
                     list(map(_AGENT_ROW, changes.agents))),
            RowGroup(schema.tasks, ("source", "task_id"), "update",
                     list(map(_TASK_ROW, changes.tasks))),
            RowGroup(schema.workflow_runs, ("source", "run_id"), "update",
                     [_run_row(run) for run in changes.runs]),
            RowGroup(schema.steps, ("source", "run_id", "step_id"), "update",
                     list(map(_STEP_ROW, changes.steps))),
            RowGroup(schema.label_values, ("label", "value"), "skip",
                     list(changes.label_values)),
            RowGroup(schema.daily_cost, DAILY_COST_KEYS, "add",
                     [(*key, *usage) for key, usage in changes.daily_cost.items()]),
            RowGroup(schema.checkpoint, ("id",), "update", [(1, applied_seq)]),
        ]
        return [group for group in groups if group.rows]

    def write_checkpoint(self, groups: list[RowGroup]) -> None:
        """Write prepared rows in one transaction: absolute values, except daily cost, which is
        added to.

        Through a connection of its own that commits without waiting for the disk (SQLite:
        synchronous=NORMAL, in WAL mode still atomic; PostgreSQL: synchronous_commit off): a
        checkpoint lost to a power cut is rebuilt by replaying the events after the one before
        it, which the ingest writer's own commits made durable, and every later durable commit
        writes the log it is in. Readers write one checkpoint per read under ingest (read your
        writes); its fsync was a third of their time (docs/benchmarks.md). The connection never
        goes back to the pool, so the ingest writer can never get one that does not wait."""
        with self.gate:
            connection = self._checkpoint_connection()
            try:
                with connection.begin():
                    if not self.bulk:
                        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    for group in groups:
                        self.write_rows(connection, group)
            except BaseException:
                self._drop_checkpointer()
                raise

    def _checkpoint_connection(self) -> Connection:
        if self._checkpointer is None:
            connection = self.engine.connect()
            driver = connection.connection.driver_connection
            if isinstance(driver, sqlite3.Connection):
                driver.execute("PRAGMA synchronous=NORMAL")
            self._checkpointer = connection
        return self._checkpointer

    def _drop_checkpointer(self) -> None:
        """Its database connection is discarded, not pooled: it does not wait for the disk."""
        if self._checkpointer is not None:
            self._checkpointer.invalidate()
            self._checkpointer.close()
            self._checkpointer = None

    def write_rows(self, connection: Connection, group: RowGroup) -> None:
        """All rows of a group in one statement on SQLite, one executemany elsewhere."""
        statement = self._statements.get((group.table.name, group.on_conflict))
        if statement is None:
            statement = self._build_statement(group)
            self._statements[(group.table.name, group.on_conflict)] = statement
        if isinstance(statement, str):
            connection.exec_driver_sql(statement, (bulk.rows_parameter(group.rows),))
            return
        names = [column.name for column in group.table.columns]
        connection.execute(statement, [dict(zip(names, row, strict=True))
                                       for row in group.rows])

    def _build_statement(self, group: RowGroup) -> Insert | str:
        table, keys = group.table, group.keys
        others = [column.name for column in table.columns if column.name not in keys]
        update = others if group.on_conflict == "update" else []
        add = others if group.on_conflict == "add" else []
        if self.bulk:
            return bulk.insert_sql(table.name, [column.name for column in table.columns],
                                   conflict=keys, update=update, add=add)
        statement = postgresql.insert(table)
        if group.on_conflict == "skip":
            return statement.on_conflict_do_nothing(index_elements=list(keys))
        values: dict[str, ColumnElement[Any]] = {name: statement.excluded[name]
                                                 for name in update}
        values |= {name: table.c[name] + statement.excluded[name] for name in add}
        return statement.on_conflict_do_update(index_elements=list(keys), set_=values)

    # -- reading -----------------------------------------------------------------------------

    def load_snapshot(self, budgets: tuple[Budget, ...], now: float) -> Snapshot:
        """Everything the in-memory state needs at start; no event is replayed."""
        with self.engine.connect() as connection:
            snapshot = Snapshot(
                counters={row[0]: row[1] for row in connection.execute(
                    select(schema.counters.c.key, schema.counters.c.value))},
                histograms=dict(_histograms(connection)),
                agents=[_entity(Agent, row) for row in connection.execute(
                    select(schema.agents).where(schema.agents.c.deleted.is_(False)))],
                deleted_agents=_deleted_agents(connection),
                label_values=_label_values(connection),
            )
            self._load_tasks(connection, snapshot)
            self._load_runs(connection, snapshot)
            snapshot.applied_seq = connection.execute(
                select(schema.checkpoint.c.applied_seq)).scalar() or 0
            snapshot.budget_first_day = window_start_day(budgets, now)
            snapshot.budget_days = _budget_days(connection, budgets, snapshot.budget_first_day)
        return snapshot

    @staticmethod
    def _load_tasks(connection: Connection, snapshot: Snapshot) -> None:
        table = schema.tasks
        snapshot.tasks = [_entity(Task, row) for row in connection.execute(
            select(table).where(table.c.ended_at.is_(None)))]
        ended = connection.execute(
            select(table.c.source, table.c.task_id).where(table.c.ended_at.is_not(None))
            .order_by(table.c.ended_at.desc()).limit(ENDED_MEMORY)).all()
        snapshot.ended_tasks = [(row[0], row[1]) for row in reversed(ended)]

    @staticmethod
    def _load_runs(connection: Connection, snapshot: Snapshot) -> None:
        runs, steps = schema.workflow_runs, schema.steps
        snapshot.runs = [_run(row) for row in connection.execute(
            select(runs).where(runs.c.ended_at.is_(None)))]
        ended = connection.execute(
            select(runs.c.source, runs.c.run_id).where(runs.c.ended_at.is_not(None))
            .order_by(runs.c.ended_at.desc()).limit(ENDED_MEMORY)).all()
        snapshot.ended_runs = [(row[0], row[1]) for row in reversed(ended)]
        joined = steps.join(runs, (steps.c.source == runs.c.source)
                            & (steps.c.run_id == runs.c.run_id))
        snapshot.steps = [_entity(Step, row) for row in connection.execute(
            select(steps).select_from(joined).where(runs.c.ended_at.is_(None)))]

    def budget_days(self, budgets: tuple[Budget, ...],
                    now: float) -> tuple[int, dict[str, dict[int, int]]]:
        """Each budget's spend per day of its current period, from the daily sums."""
        first_day = window_start_day(budgets, now)
        with self.reader.connect() as connection:
            return first_day, _budget_days(connection, budgets, first_day)

    def runtime_budgets(self) -> list[Budget]:
        table = schema.runtime_budgets
        with self.reader.connect() as connection:
            rows = connection.execute(select(table).order_by(table.c.name)).all()
        return [Budget(name=row.name, limit_usd=row.limit_usd, period=row.period,
                       scope=tuple((key, value) for key, value in orjson.loads(row.scope)),
                       on_exceed=row.on_exceed) for row in rows]

    def save_budget(self, budget: Budget, *, by: str, at: float) -> None:
        table = schema.runtime_budgets
        values = {"limit_usd": budget.limit_usd, "period": budget.period,
                  "scope": orjson.dumps([list(pair) for pair in budget.scope]).decode(),
                  "on_exceed": budget.on_exceed, "updated_by": by, "updated_at": at}
        with self.engine.begin() as connection:
            if connection.execute(update(table).where(table.c.name == budget.name)
                                  .values(**values)).rowcount == 0:
                connection.execute(table.insert().values(name=budget.name, **values))

    def delete_budget(self, name: str) -> None:
        table = schema.runtime_budgets
        with self.engine.begin() as connection:
            connection.execute(table.delete().where(table.c.name == name))

    def count_events(self) -> int:
        with self.reader.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(schema.events))
                       .scalar() or 0)


def _deleted_agents(connection: Connection) -> list[Agent]:
    """The most recently deleted agents, oldest first (the state remembers this many)."""
    table = schema.agents
    rows = connection.execute(select(table).where(table.c.deleted.is_(True))
                              .order_by(table.c.last_activity.desc())
                              .limit(DELETED_AGENT_MEMORY)).all()
    return [_entity(Agent, row) for row in reversed(rows)]


def _histograms(connection: Connection) -> Iterable[tuple[str, Histogram]]:
    table = schema.histograms
    for row in connection.execute(select(table.c.key, table.c.buckets, table.c.sum,
                                         table.c.count)):
        buckets = orjson.loads(row[1])
        histogram = Histogram(len(buckets))
        histogram.buckets = buckets
        histogram.sum = row[2]
        histogram.count = row[3]
        yield row[0], histogram


def _label_values(connection: Connection) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for label, value in connection.execute(select(schema.label_values.c.label,
                                                  schema.label_values.c.value)):
        values.setdefault(label, set()).add(value)
    return values


def _budget_days(connection: Connection, budgets: tuple[Budget, ...],
                 first_day: int) -> dict[str, dict[int, int]]:
    table = schema.daily_cost
    sums: dict[str, dict[int, int]] = {budget.name: {} for budget in budgets}
    if not budgets:
        return sums
    query = select(table.c.day, table.c.role, table.c.model, table.c.task_type,
                   table.c.workflow, table.c.cost_nano).where(table.c.day >= first_day)
    for day, role, model, task_type, workflow, nano in connection.execute(query):
        dimensions = {"role": role, "model": model, "task_type": task_type, "workflow": workflow}
        for budget in budgets:
            if budget.matches(dimensions):
                days = sums[budget.name]
                days[day] = days.get(day, 0) + nano
    return sums


def _last_seq(connection: Connection) -> int:
    return connection.execute(select(func.max(schema.events.c.seq))).scalar() or 0


def _row_getter(table: Table) -> Callable[[Any], tuple[Any, ...]]:
    """The row of an entity: its fields named like the table's columns, in their order. One
    C call per entity (a checkpoint copies thousands, holding the lock that scrapes wait for)."""
    return operator.attrgetter(*(column.name for column in table.columns))


_AGENT_ROW: Final = _row_getter(schema.agents)
_TASK_ROW: Final = _row_getter(schema.tasks)
_STEP_ROW: Final = _row_getter(schema.steps)
_RUN_ROW: Final = _row_getter(schema.workflow_runs)
_RUN_STEPS: Final = [column.name for column in schema.workflow_runs.columns].index("steps")


def _entity(kind: type[EntityT], row: Any) -> EntityT:
    return kind(**row._mapping)


def _run_row(run: Run) -> tuple[Any, ...]:
    row = list(_RUN_ROW(run))
    row[_RUN_STEPS] = orjson.dumps(run.steps).decode()
    return tuple(row)


def _run(row: Any) -> Run:
    return Run(**{**row._mapping, "steps": orjson.loads(row.steps)})
