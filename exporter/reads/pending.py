"""Read your writes without writing: the state's changes that no checkpoint has written yet,
laid over the ledger's rows in the read's own SQL.

A read used to write a checkpoint first, so the rows it read held every acknowledged event.
Under ingest that write was most of a read's time (docs/benchmarks.md: list p95 97-306 ms with
it, 27-103 ms without, on a 300k-event ledger). Now the read takes a copy of the pending rows
(the entities changed since the last checkpoint, with their current values, and the day sums
added since) and reads each table as "its stored rows whose key is not pending, and the pending
rows": the same filters, sort and cursor run over both in SQL, so the answer is what the table
would hold after a checkpoint.

The day sums are added to, not replaced, so they must be counted once: the read also reads the
checkpoint's seq in its snapshot, and `Pending.daily_rows` says which pending sums that snapshot
lacks (those of a checkpoint still being written are in it once it commits).

SQLite only (`json_each`); on PostgreSQL the reads write a checkpoint first, as before.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from sqlalchemy import (
    CTE,
    Float,
    FromClause,
    Select,
    String,
    Table,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from exporter.ledger import schema
from exporter.reads.pages import Sort, after_cursor

Row = tuple[Any, ...]
# The tables whose rows the state replaces whole (an entity's current values), by name.
ENTITY_TABLES: Final = {table.name: table for table in (
    schema.agents, schema.tasks, schema.workflow_runs, schema.steps)}
DAILY: Final = schema.daily_cost
# A query over a table or its pending rows: (the query, its sort columns: value, then key).
PageQuery = Callable[[FromClause], tuple[Select[Any], list[ColumnElement[Any]]]]


@dataclass(frozen=True, slots=True)
class Pending:
    """The state's rows that the ledger may not hold yet, as of one moment under the lock."""

    # Per entity table: the rows changed since the last written checkpoint, current values,
    # in the table's column order.
    rows: Mapping[str, Sequence[Row]] = field(default_factory=dict)
    checkpointed_seq: int = 0  # the last checkpoint written, as the pipeline knew then
    writing_seq: int | None = None  # a checkpoint being written, its seq
    writing_daily: Sequence[Row] = ()  # its day sums
    daily: Sequence[Row] = ()  # day sums added since it was taken

    def daily_rows(self, stored_seq: int) -> Sequence[Row] | None:
        """The day sums a snapshot whose checkpoint row says `stored_seq` lacks; None when a
        checkpoint taken after this copy was written (the caller takes a new copy)."""
        if stored_seq == self.checkpointed_seq:
            return [*self.writing_daily, *self.daily]
        if stored_seq == self.writing_seq:
            return self.daily
        return None


def pending_of(checkpointed_seq: int, writing: tuple[int, Mapping[str, Sequence[Row]]] | None,
               now: Mapping[str, Sequence[Row]]) -> Pending:
    """A `Pending` from the rows of the checkpoint being written (its seq and rows per table)
    and the rows of the changes since; an entity in both takes its newer row."""
    rows: dict[str, Sequence[Row]] = {}
    for name, table in ENTITY_TABLES.items():
        newer = now.get(name, ())
        older = writing[1].get(name, ()) if writing is not None else ()
        if older:
            size = len(table.primary_key.columns)
            merged = {row[:size]: row for row in older}
            merged.update((row[:size], row) for row in newer)
            rows[name] = list(merged.values())
        elif newer:
            rows[name] = newer
    if writing is None:
        return Pending(rows, checkpointed_seq, daily=now.get(DAILY.name, ()))
    return Pending(rows, checkpointed_seq, writing[0], writing[1].get(DAILY.name, ()),
                   now.get(DAILY.name, ()))


@functools.lru_cache(maxsize=8)
def _row_type(table: Table) -> Any:
    """Pending rows read by column name, as the stored rows are."""
    return namedtuple(f"{table.name}_row", [each.name for each in table.columns])


def _key_of(table: Table) -> list[str]:
    """The primary key's column names, in the table's column order (as a row starts)."""
    names = [each.name for each in table.columns]
    key = [each.name for each in table.primary_key.columns]
    if names[:len(key)] != key:
        raise ValueError(f"{table.name}: rows must begin with the key")
    return key


def _rows_cte(table: Table, rows: Sequence[Row], name: str) -> CTE:
    """The rows as a table with `table`'s columns, read by SQLite from one JSON parameter."""
    values = []
    for index, each in enumerate(table.columns):
        value = f"value->>{index}"
        # A float sent as a whole number (5.0) reads back as an integer; stored, it is REAL.
        values.append(f"CAST({value} AS REAL)" if isinstance(each.type, Float) else value)
    statement = text(f"SELECT {', '.join(f'{value} AS {each.name}' for value, each in zip(values, table.columns, strict=True))} "  # noqa: E501
                     f"FROM json_each(:{name})")
    statement = statement.bindparams(bindparam(name, orjson.dumps(list(rows)).decode()))
    return statement.columns(*(column(each.name, each.type) for each in table.columns)).cte(name)


def json_values(values: Sequence[Any]) -> Select[Any]:
    """The values as a subquery of one column, from one JSON parameter: any number of them
    (a bound parameter each would meet SQLite's limit on parameters)."""
    return select(column("value")).select_from(
        func.json_each(bindparam(None, orjson.dumps(list(values)).decode())))


def _joined_key(table: FromClause, names: Sequence[str]) -> ColumnElement[Any]:
    """A row's key (the columns `names`) as one text: each part but the last prefixed with
    its length, so no two keys join alike."""
    key = [table.c[name] for name in names]
    joined: ColumnElement[Any] = key[-1]
    for part in reversed(key[:-1]):
        joined = cast(func.length(part), String) + ":" + part + joined
    return joined


class Current:
    """The ledger's tables as of now: stored rows with the pending ones in their place. With
    nothing pending (or `pending` None: the ledger was brought up to date), the tables."""

    def __init__(self, pending: Pending | None) -> None:
        self.pending = pending

    def _pending_cte(self, table: Table) -> CTE | None:
        rows = self._rows_of(table)
        return _rows_cte(table, rows, f"pending_{table.name}") if rows else None

    @staticmethod
    def _stored(table: Table, pending: CTE) -> ColumnElement[bool]:
        """The stored rows whose key is not pending. One text per key: SQLite looks a row
        value up in `(a, b) NOT IN (...)` 4 times slower (measured on 6,000 tasks: 28 ms
        against 7 ms), and a scan (a sum, a text search) does it for every row."""
        key = _key_of(table)
        return _joined_key(table, key).not_in(select(_joined_key(pending, key)))

    def where(self, table: Table, rows: Callable[[Select[Any]], Sequence[Any]],
              **equal: Any) -> list[Any]:
        """The rows of `table` as it is now whose columns equal `equal` (a column name: a
        value, or a list of values), read with `rows`. For lookups of one entity and what
        belongs to it: the stored rows are read by the table's indexes and the pending ones
        are matched here, exact equality being the same in Python as in SQLite. Laid over in
        SQL (`table`), such a lookup read every pending row out of JSON: 83 ms for a task's
        detail with 300 rows pending per table, against 7 ms."""
        terms = [table.c[name].in_(value) if isinstance(value, list) else table.c[name] == value
                 for name, value in equal.items()]
        stored = rows(select(table).where(*terms))
        pending = self._rows_of(table)
        if not pending:
            return list(stored)
        size = len(table.primary_key.columns)
        keys = {row[:size] for row in pending}
        shape = _row_type(table)
        names = [each.name for each in table.columns]
        wanted = [(names.index(name), set(value) if isinstance(value, list) else {value})
                  for name, value in equal.items()]
        return [row for row in stored if tuple(row[:size]) not in keys] + [
            shape._make(row) for row in pending
            if all(row[index] in values for index, values in wanted)]

    def table(self, table: Table) -> FromClause:
        """`table` as it is now, for sums over it (SQLite pushes their conditions into both
        halves, so the table's indexes still serve)."""
        pending = self._pending_cte(table)
        if pending is None:
            return table
        return union_all(select(table).where(self._stored(table, pending)),
                         select(pending)).subquery(f"{table.name}_now")

    def page(self, table: Table, query: PageQuery, sort: Sort, cursor: str | None,
             limit: int) -> Any:
        """A page of `query` over `table` as it is now: one query per half, each after the
        cursor, merged in order (SQLite merges two ordered halves; the stored half walks its
        sort index, as a plain page does)."""
        stored, columns = query(table)
        stored = after_cursor(stored, columns, sort, cursor)
        pending = self._pending_cte(table)
        if pending is None:
            ordering = [each.desc() if sort.descending else each.asc() for each in columns]
            return stored.order_by(*ordering).limit(limit + 1)
        # Tested only on rows that pass the page's own conditions: SQLite tests the key
        # first otherwise, and a text search scans every row (measured on 6,000 tasks, 300
        # pending: 12.2 ms against 3.9).
        not_pending = self._stored(table, pending)
        if stored.whereclause is not None:
            not_pending = case((stored.whereclause, not_pending), else_=false())
        fresh, fresh_columns = query(pending)
        both = union_all(stored.where(not_pending),
                         after_cursor(fresh, fresh_columns, sort, cursor))
        names: list[ColumnElement[Any]] = [
            literal_column(name) for name in ("sort_value", *_key_of(table))]
        ordering = [each.desc() if sort.descending else each.asc() for each in names]
        return both.order_by(*ordering).limit(limit + 1)

    def pending_rows(self, table: Table) -> list[Any]:
        """The pending rows of `table`, read by column name as the stored rows are."""
        shape = _row_type(table)
        return [shape._make(row) for row in self._rows_of(table)]

    def _rows_of(self, table: Table) -> Sequence[Row]:
        return self.pending.rows.get(table.name, ()) if self.pending is not None else ()

    def daily(self, stored_seq: int) -> FromClause | None:
        """The day sums as they are now, for a snapshot whose checkpoint says `stored_seq`; None
        when this copy cannot say (see `Pending.daily_rows`)."""
        if self.pending is None:
            return DAILY
        rows = self.pending.daily_rows(stored_seq)
        if rows is None:
            return None
        if not rows:
            return DAILY
        pending = _rows_cte(DAILY, rows, "pending_daily_cost")
        return union_all(select(DAILY), select(pending)).subquery("daily_cost_now")
