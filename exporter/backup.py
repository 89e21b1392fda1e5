"""`backup` and `restore` of a SQLite ledger, consistent while the exporter serves.

SQLite's online backup copies the database page by page inside read transactions, so the copy
is one committed state (events, entities and the checkpoint that names its last event) however
busy the writer is; WAL content committed before the copy is included. A restored ledger starts
like the original after a restart: its checkpoint is loaded and the events after it re-applied.
PostgreSQL ledgers are backed up with pg_dump (docs/operations.md).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

PAGES_PER_STEP: Final = 1_024  # the writer may commit between steps of the copy


class BackupError(RuntimeError):
    pass


def sqlite_path(database_url: str) -> Path:
    """The file of a `sqlite:///FILE` URL; BackupError for any other database."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or database_url == prefix:
        raise BackupError("backup and restore copy SQLite ledgers; for PostgreSQL use pg_dump "
                          "and pg_restore (docs/operations.md)")
    return Path(database_url[len(prefix):])


def backup(database_url: str, target: Path) -> int:
    """Copy the ledger to `target` (which must not exist); the number of pages copied."""
    source = sqlite_path(database_url)
    if not source.exists():
        raise BackupError(f"no ledger at {source}")
    if target.exists():
        raise BackupError(f"{target} exists; give a new file")
    return _copy(source, target)


def restore(backup_file: Path, database_url: str) -> int:
    """Copy a backup into the ledger of `database_url`, which must be new or hold no events."""
    target = sqlite_path(database_url)
    if not backup_file.is_file():
        raise BackupError(f"no backup at {backup_file}")
    _check_is_ledger(backup_file)
    if target.exists() and _holds_events(target):
        raise BackupError(f"{target} already holds events; restore into an empty ledger")
    for leftover in (target, target.with_name(target.name + "-wal"),
                     target.with_name(target.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return _copy(backup_file, target)


def _copy(source: Path, target: Path) -> int:
    pages = 0

    def progress(_status: int, remaining: int, total: int) -> None:
        nonlocal pages
        pages = total - remaining

    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer, pages=PAGES_PER_STEP, progress=progress)
        writer.execute("PRAGMA journal_mode=WAL")
    finally:
        writer.close()
        reader.close()
    return pages


def _check_is_ledger(path: Path) -> None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            connection.execute("SELECT count(*) FROM checkpoint").fetchone()
            connection.execute("SELECT max(seq) FROM events").fetchone()
    except sqlite3.DatabaseError as error:
        raise BackupError(f"{path} is not a ledger backup: {error}") from None


def _holds_events(path: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:
        return False  # no events table: a new file
