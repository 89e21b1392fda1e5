"""Engines for the ledger: SQLite (WAL) by default, PostgreSQL when shared."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event


def make_engine(url: str, *, sqlite_synchronous: str = "FULL",
                sqlite_max_bytes: int | None = None, sqlite_cache_mib: int = 16) -> Engine:
    """An engine with the pragmas the ledger's durability and speed rely on; with
    `sqlite_max_bytes`, SQLite refuses to grow the file past it (as a full disk would)."""
    if url.startswith("sqlite"):
        # Pooled connections keep SQLite's page cache (and the id index in it) warm.
        engine = create_engine(url, pool_size=4,
                               connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect",
                     lambda connection, _record: _sqlite_pragmas(connection, sqlite_synchronous,
                                                                 sqlite_max_bytes,
                                                                 sqlite_cache_mib))
        # pysqlite's own transaction handling would defer BEGIN; issue it ourselves. IMMEDIATE:
        # a transaction that reads and then writes would otherwise fail with "database is
        # locked" when the other writer (checkpoint or ingest) committed in between.
        event.listen(engine, "begin",
                     lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4)


def make_read_engine(url: str, writer: Engine) -> Engine:
    """The engine the read API and the live stream read through. SQLite: connections that
    begin with a plain (deferred) BEGIN and may not write. In WAL mode such a transaction
    reads a snapshot: it neither waits for the writer's commits nor holds them up, where the
    writer's BEGIN IMMEDIATE would take the one write lock for every read (measured in
    docs/benchmarks.md: list reads under ingest 126-316 ms at p95 against 7-29 ms without).
    PostgreSQL's reads never block its writes: the writer's engine serves both."""
    if not url.startswith("sqlite") or _in_memory(url):
        return writer  # an in-memory database exists only in its own connections
    engine = create_engine(url, pool_size=8,
                           connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", lambda connection, _record: _reader_pragmas(connection))
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    return engine


def _in_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url


def _reader_pragmas(connection: Any) -> None:
    assert isinstance(connection, sqlite3.Connection)
    connection.isolation_level = None
    cursor = connection.cursor()
    # Smaller than the writer's: readers are many, and the OS keeps the file's pages too.
    cursor.execute("PRAGMA cache_size=-16384")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_pragmas(connection: Any, synchronous: str, max_bytes: int | None,
                    cache_mib: int) -> None:
    assert isinstance(connection, sqlite3.Connection)
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")  # KiB, when negative
    cursor.execute("PRAGMA busy_timeout=30000")
    # Random idempotency-key hashes dirty index pages all over; checkpointing rarely lets one
    # page absorb many commits before it is copied back (measured: 70k -> 104k rows/s).
    cursor.execute("PRAGMA wal_autocheckpoint=16384")
    # Readers overlapping the writer can keep a checkpoint from resetting the log for a while;
    # once one does, the file is cut back to this instead of keeping its largest size.
    cursor.execute("PRAGMA journal_size_limit=67108864")
    cursor.execute("PRAGMA foreign_keys=ON")
    if max_bytes is not None:
        page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")
    cursor.close()


def is_disk_full(error: BaseException) -> bool:
    """The database refused a write for want of space: SQLite's SQLITE_FULL, PostgreSQL's
    disk_full (SQLSTATE 53100)."""
    original = getattr(error, "orig", error)
    if isinstance(original, sqlite3.OperationalError):
        return "full" in str(original).lower()
    return getattr(original, "sqlstate", None) == "53100" or getattr(
        original, "pgcode", None) == "53100"
