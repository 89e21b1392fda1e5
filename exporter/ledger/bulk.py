"""Many rows in one SQLite statement: `INSERT ... SELECT ... FROM json_each(?)`.

pysqlite releases the GIL around every row of an `executemany` and must take it back before the
next one. While another thread runs Python (the event loop, the applier), each row waits for
that thread to yield the GIL, up to the 5 ms switch interval: measured here, 210k rows/s alone
fell to 2.6k rows/s beside one busy thread. One statement over a JSON array of the rows takes
the GIL back once per group instead (52k rows/s beside the same thread); SQLite reads the JSON
in C without it.

Event payloads are not JSON-escaped into that array: they are concatenated into a second
parameter and cut out with `substr`, which keeps the stored bytes exactly as given and costs
SQLite no JSON parsing (5.2 us per row in all against 7.7 us for payloads inside the JSON). A row
carries only its payload's length; SQLite finds where it starts with a running sum, so the rows
and payloads of several batches, each prepared on its own (in a parse worker), are joined by
concatenation alone (`join_sliced`).

Floats cross as JSON numbers: orjson writes the shortest text that reads back as the same
double, and SQLite reads it back exactly (checked on 900k random doubles, every bit pattern).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

# `->>` (SQL value of a JSON element) arrived in SQLite 3.38.0.
MIN_SQLITE: Final = (3, 38, 0)


def check_sqlite_version() -> None:
    """Fail at start, not at the first write, on a SQLite without `->>`."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        wanted = ".".join(map(str, MIN_SQLITE))
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old for the ledger; "
                           f"{wanted} or newer is needed")


def insert_sql(table: str, columns: Sequence[str], *, conflict: Sequence[str] = (),
               update: Sequence[str] = (), add: Sequence[str] = (), sliced: bool = False,
               expressions: Mapping[str, str] | None = None) -> str:
    """An INSERT reading its rows from a JSON array of arrays in `columns` order (parameter 1).

    `update` columns take the new value on a conflict with `conflict`, `add` columns add it;
    with neither, a conflicting row is skipped. With `sliced`, the last column is a BLOB cut
    from parameter 2 (see `exporter.rows.sliced_rows`), so large values are never written as
    JSON and parsed.
    `expressions` replace a column's value by SQL, which may use `{value}` (the JSON's value).
    """
    values = [f"value->>{index}" for index in range(len(columns))]
    order = ""
    if sliced:
        size = f"(value->>{len(columns) - 1})"
        values[-1] = f"substr(?2, sum({size}) OVER (ORDER BY key) - {size} + 1, {size})"
        order = " ORDER BY key"  # rows are stored in the array's order (seq follows it)
    for column, expression in (expressions or {}).items():
        index = list(columns).index(column)
        values[index] = expression.format(value=values[index])
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "
           # WHERE true: without it SQLite would read ON CONFLICT as part of a join.
           f"FROM json_each(?1) WHERE true{order}")
    if not conflict:
        return sql
    sets = [f"{column} = excluded.{column}" for column in update]
    sets += [f"{column} = {table}.{column} + excluded.{column}" for column in add]
    action = f"DO UPDATE SET {', '.join(sets)}" if sets else "DO NOTHING"
    return f"{sql} ON CONFLICT ({', '.join(conflict)}) {action}"


def rows_parameter(rows: Iterable[Any]) -> bytes:
    """A JSON array of rows (arrays) or values, as `insert_sql` statements and lookups read."""
    return orjson.dumps(list(rows))


def join_sliced(parts: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The parameters of several `exporter.rows.sliced_rows` results as one: the rows in order."""
    if len(parts) == 1:
        return parts[0]
    arrays = b",".join(rows[1:-1] for rows, _ in parts if rows != b"[]")
    return b"[" + arrays + b"]", b"".join(blob for _, blob in parts)
