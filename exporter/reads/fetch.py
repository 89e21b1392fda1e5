"""A read's rows in one step: on SQLite, a query's rows come back as one JSON array.

pysqlite releases the GIL around each row it steps to, and takes it back before the next one.
While the applier or the event loop runs Python, each row waits for that thread to yield the
GIL (exporter/ledger/bulk.py measured the same for writes). Measured on a page of 101 agents
beside one busy thread: p50 7.0 ms, p95 285 ms row by row; p50 12.3 ms, p95 22.0 ms as one JSON
value (`json_group_array`), which SQLite builds without the GIL. Alone, 0.6 against 0.7 ms.

The array keeps the query's order: SQLite does not flatten a subquery with ORDER BY and LIMIT
into an aggregate, so the aggregate takes the rows in the subquery's order (the read tests check
every sort both ways against rows read one by one).
"""

from __future__ import annotations

import functools
import math
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    Integer,
    LargeBinary,
    String,
    case,
    cast,
    func,
    null,
    select,
)


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    """Rows read by name and by position, as SQLAlchemy's are."""
    return namedtuple("Row", names, rename=True)


def _exponent(column: Any) -> Any:
    return cast(func.floor(func.log2(func.abs(column))), Integer)


def _values(column: Any, kind: Any) -> list[Any]:
    """The column as JSON values that read back exactly (see `_decoded`)."""
    if isinstance(kind, LargeBinary):  # not a JSON value; the ledger's are UTF-8 (JSON) text
        return [cast(column, String)]
    if isinstance(kind, Float):
        # SQLite (3.40) writes a REAL into JSON, or as text, with 15 digits, and a double may
        # need 17 (1796227392.4381235 came back 1796227392.43812); its printf's 17 digits are
        # not exact either. So a float crosses as two integers: x * 2^(60 - e) and e, e its
        # binary exponent (log2 may be one off near a power of 2: the first stays an integer
        # below 2^62 either way). The power of 2 is applied in two halves, each finite even
        # for the smallest and largest doubles; scaling by a power of 2 is exact.
        shift = 60 - _exponent(column)
        half = shift // 2
        scaled = column * func.pow(2.0, half) * func.pow(2.0, shift - half)
        nonzero = column != 0
        return [case((nonzero, cast(scaled, Integer)), else_=column),
                case((nonzero, _exponent(column)), else_=null())]
    return [column]


def _decoded(values: list[Any], kinds: list[Any]) -> list[Any]:
    row: list[Any] = []
    position = 0
    for kind in kinds:
        value = values[position]
        if isinstance(kind, Float):
            exponent = values[position + 1]
            position += 2
            row.append(value if exponent is None or value is None
                       else math.ldexp(value, exponent - 60))
            continue
        position += 1
        if value is not None and isinstance(kind, Boolean):
            value = bool(value)  # SQLite's JSON has no booleans: 0 and 1
        elif value is not None and isinstance(kind, LargeBinary):
            value = value.encode()
        row.append(value)
    return row


def fetch(connection: Connection, statement: Any) -> Sequence[Any]:
    """The rows of `statement` (a select or a union of selects)."""
    if connection.dialect.name != "sqlite":
        return connection.execute(statement).all()
    columns = list(statement.selected_columns)
    kinds = [column.type for column in columns]
    page = statement.subquery("fetched")
    values = [value for index, kind in enumerate(kinds) for value in _values(page.c[index], kind)]
    packed = connection.execute(select(func.json_group_array(func.json_array(*values)))
                                ).scalar()
    shape = _row_type(tuple(column.key or f"column_{index}"
                            for index, column in enumerate(columns)))
    return [shape._make(_decoded(row, kinds)) for row in (orjson.loads(packed) if packed else [])]
