"""SQLite's set of idempotency keys: a sorted run on disk plus the recent keys in memory.

A unique index on random 64-bit hashes puts each new event on a different index page, so every
commit rewrote about one 4 KiB page per event into the WAL, and the cost grew with the ledger
(measured: 12 us per row at 250k rows, 24 us at 1M, 35k rows/s). Instead the hashes of recent
events go to an in-memory table on the writer's connection, and are merged into the on-disk
`event_ids` in one sorted pass when enough have gathered, which writes each page once per merge
instead of once per event (75k rows/s, flat up to 1.2M rows).

Temporary triggers on the writer's connection make the insert itself skip a known key, so the
batch stays one statement and duplicates inside a batch are caught too. The in-memory table
changes inside the write transaction, so a rolled-back batch leaves no key behind; at start it
is refilled from the events after the last merge. Only the writer's connection sees it: the
ledger has one writing process (documented).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection

# Merge when the recent keys reach this many, or an eighth of the merged ones if more: each
# merge rewrites the run's pages it touches, so larger runs wait for larger merges.
MERGE_MIN: Final = 200_000
MERGE_FRACTION: Final = 8

_SETUP: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS recent_ids "
    "(id_hash INTEGER PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TEMP TRIGGER IF NOT EXISTS skip_known_id BEFORE INSERT ON main.events "
    "WHEN NEW.id_hash IS NOT NULL BEGIN "
    "SELECT RAISE(IGNORE) WHERE EXISTS (SELECT 1 FROM temp.recent_ids WHERE id_hash = "
    "NEW.id_hash) OR EXISTS (SELECT 1 FROM main.event_ids WHERE id_hash = NEW.id_hash); END",
    # Trigger bodies may not name a schema; recent_ids resolves to the temporary table.
    "CREATE TEMP TRIGGER IF NOT EXISTS claim_id AFTER INSERT ON main.events "
    "WHEN NEW.id_hash IS NOT NULL BEGIN "
    "INSERT INTO recent_ids (id_hash, seq) VALUES (NEW.id_hash, NEW.seq); END",
)


class IdSet:
    """The key set of one writer connection; `load` once, then `merge_if_due` after commits."""

    def __init__(self, *, merge_min: int = MERGE_MIN) -> None:
        self.merge_min = merge_min
        self.recent = 0
        self.merged_seq = 0

    def load(self, connection: Connection) -> None:
        """Create the in-memory table and triggers; fill it with the keys after the last merge."""
        with connection.begin():
            for statement in _SETUP:
                connection.exec_driver_sql(statement)
            connection.exec_driver_sql("DELETE FROM temp.recent_ids")
            self.merged_seq = connection.exec_driver_sql(
                "SELECT coalesce(max(seq), 0) FROM event_ids_merged").scalar() or 0
            self.recent = connection.exec_driver_sql(
                "INSERT INTO temp.recent_ids (id_hash, seq) SELECT id_hash, seq FROM main.events "
                "WHERE seq > ? AND id_hash IS NOT NULL ORDER BY id_hash",
                (self.merged_seq,)).rowcount

    def stored(self, connection: Connection,
               hashes: list[int]) -> list[tuple[int, int, str | None]]:
        """(hash, seq, id) of the stored events among `hashes` (at most 16k of them)."""
        marks = ", ".join("?" * len(hashes))
        query = (
            "SELECT known.id_hash, events.seq, events.event_id FROM ("
            f"SELECT id_hash, seq FROM temp.recent_ids WHERE id_hash IN ({marks}) UNION ALL "
            f"SELECT id_hash, seq FROM main.event_ids WHERE id_hash IN ({marks})"
            ") AS known JOIN main.events ON events.seq = known.seq")
        rows = connection.exec_driver_sql(query, (*hashes, *hashes)).all()
        return [(row[0], row[1], row[2]) for row in rows]

    def added(self, count: int) -> None:
        """`count` events with keys were committed."""
        self.recent += count

    def merge_if_due(self, connection: Connection) -> bool:
        """Merge the recent keys into `event_ids` when enough have gathered."""
        if self.recent < max(self.merge_min, self.merged_seq // MERGE_FRACTION):
            return False
        with connection.begin():
            last = connection.exec_driver_sql(
                "SELECT coalesce(max(seq), 0) FROM main.events").scalar() or 0
            connection.exec_driver_sql(
                "INSERT INTO main.event_ids (id_hash, seq) SELECT id_hash, seq "
                "FROM temp.recent_ids ORDER BY id_hash")
            connection.exec_driver_sql(
                "INSERT INTO main.event_ids_merged (id, seq) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq", (last,))
            connection.exec_driver_sql("DELETE FROM temp.recent_ids")
        self.merged_seq, self.recent = last, 0
        return True
