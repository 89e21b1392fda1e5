"""The read API's rows as one JSON value on SQLite (exporter/reads/fetch.py): every value must
come back exactly as SQLAlchemy would read it row by row, and in the query's order."""

from __future__ import annotations

import random
import struct

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    insert,
    select,
    union_all,
)

from exporter.reads.fetch import fetch

METADATA = MetaData()
VALUES = Table("values_", METADATA, Column("id", Integer, primary_key=True),
               Column("x", Float), Column("flag", Boolean), Column("n", BigInteger),
               Column("name", String(64)), Column("blob", LargeBinary))


def _doubles(count: int) -> list[float | None]:
    rng = random.Random(7)
    found: list[float | None] = [None, 0.0, -0.0, 1.0, 5.0, -2.5, 2.0 ** 52, 1e-300, 1e300]
    for _ in range(count):
        found.append(1.7e9 + rng.random() * 1e8)  # timestamps
        found.append(rng.random())  # ratios
        bits = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if bits == bits and abs(bits) != float("inf"):
            found.append(bits)  # any double at all
    return found


def test_every_value_reads_back_exactly_and_in_order() -> None:
    engine = create_engine("sqlite://")
    METADATA.create_all(engine)
    doubles = _doubles(30_000)
    rows = [{"id": index, "x": value, "flag": [None, True, False][index % 3],
             "n": (index * 7919) << 30, "name": f"agent \"{index}\" é\n",
             "blob": b'{"a": "\\u00e9"}' if index % 2 else None}
            for index, value in enumerate(doubles)]
    with engine.begin() as connection:
        connection.execute(insert(VALUES), rows)
    for statement in (select(VALUES).order_by(VALUES.c.x.desc(), VALUES.c.id),
                      select(VALUES).order_by(VALUES.c.id.desc()).limit(1_000),
                      union_all(select(VALUES).where(VALUES.c.id < 500),
                                select(VALUES).where(VALUES.c.id >= 500)).order_by("id")):
        with engine.connect() as connection:
            expected = [tuple(row) for row in connection.execute(statement).all()]
            found = fetch(connection, statement)
        assert [tuple(row) for row in found] == expected
        # -0.0 == 0.0: compare the bits of every float too.
        assert [struct.pack("d", row.x) if row.x is not None else None for row in found] == \
            [struct.pack("d", row[1]) if row[1] is not None else None for row in expected]
        assert all(isinstance(row.flag, bool) for row in found if row.flag is not None)


def test_aggregates_and_unnamed_columns_read_by_position() -> None:
    engine = create_engine("sqlite://")
    METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(VALUES), [{"id": index, "name": "ab"[index % 2], "n": index}
                                            for index in range(10)])
        statement = select(VALUES.c.name, func.count(), func.sum(VALUES.c.n)) \
            .group_by(VALUES.c.name).order_by(VALUES.c.name)
        assert [tuple(row) for row in fetch(connection, statement)] == [("a", 5, 20),
                                                                       ("b", 5, 25)]
        assert fetch(connection, select(VALUES).where(VALUES.c.id > 99)) == []
