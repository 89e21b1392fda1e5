"""SQLite's set of idempotency keys: a sorted run on disk plus the recent keys in memory.

A unique index on random 64-bit hashes puts each new event on a different index page, so every
commit rewrote about one 4 KiB page per event into the WAL, and the cost grew with the ledger
(measured: 12 us per row at 250k rows, 24 us at 1M: 35k rows/s). Instead the writer keeps the
hashes of recent events in a dict and merges them into the on-disk `event_ids` in one sorted
pass when enough have gathered, which writes each page once per merge instead of once per event.
A group's keys are looked up in `event_ids` by one join in SQLite, without the GIL.

The dict is the writer's alone (the ledger has one writing process, documented), changes only
when a write transaction commits, and is refilled at start from the events after the last merge.

A merge of 200k keys takes SQLite about 300 ms, during which no event could be written, and every
request in flight waited. So a merge is split by key range into parts of about `MERGE_CHUNK`
keys, one part after each write, each touching only its range's pages; the keys stay in memory
until the last part marks the merge done. After a crash in between, the parts already written
are merged again, harmlessly (their keys are skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, cast

import orjson
from sqlalchemy import Connection

from exporter.ledger import bulk

# Merge when the recent keys reach this many, or an eighth of the merged ones if more (each
# merge rewrites the pages of the run it touches), but keep at most MERGE_MAX in memory.
MERGE_MIN: Final = 200_000
MERGE_FRACTION: Final = 8
MERGE_MAX: Final = 500_000
# Keys per part of a merge: about 20 ms of SQLite after one write.
MERGE_CHUNK: Final = 16_384

_LOOKUP: Final = ("SELECT keys.value, event_ids.seq FROM json_each(?) AS keys "
                  "JOIN main.event_ids ON event_ids.id_hash = keys.value")
# Sorted by SQLite, without the GIL: the run's pages are then written in order. The keys come
# as one JSON object {hash: seq}: SQLite reads an object's keys without parsing each pair as an
# array (measured on 200k keys: 176 ms against 297 ms with `value->>0, value->>1`), and orjson
# writes it from the dict itself (23 ms against 41 ms for a list of pairs). A hash is exact as
# text, and CAST reads it back exactly.
_MERGE: Final = ("INSERT INTO event_ids (id_hash, seq) SELECT CAST(key AS INTEGER), value "
                 "FROM json_each(?) WHERE true ORDER BY 1 ON CONFLICT (id_hash) DO NOTHING")
# SQL true when the key (`{key}`) is merged: a statement that stores events without asking
# `known` first tests each row with it (see `Ledger._append`).
MERGED: Final = "EXISTS (SELECT 1 FROM main.event_ids WHERE event_ids.id_hash = {key})"
_MARK: Final = ("INSERT INTO event_ids_merged (id, seq) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq")


class IdSet:
    """The stored keys as the writer sees them: `load` once, then per write transaction
    `known`, `stage`, and `commit` or `discard`; `merge_if_due` between transactions."""

    def __init__(self, *, merge_min: int = MERGE_MIN, merge_chunk: int = MERGE_CHUNK) -> None:
        self.merge_min = merge_min
        self.merge_chunk = merge_chunk
        self.recent: dict[int, int] = {}
        # The keys of a merge under way (also in memory until it is done), and its parts left.
        self.merging: dict[int, int] = {}
        self._parts: list[dict[int, int]] = []
        self._merging_seq = 0
        self.merged_seq = 0
        self._staged: list[tuple[int, int]] = []

    def load(self, connection: Connection) -> None:
        """The keys stored after the last merge, from the events themselves."""
        self.merged_seq = connection.exec_driver_sql(
            "SELECT coalesce(max(seq), 0) FROM event_ids_merged").scalar() or 0
        rows = connection.exec_driver_sql(
            "SELECT id_hash, seq FROM events WHERE seq > ? AND id_hash IS NOT NULL",
            (self.merged_seq,))
        self.recent = {row[0]: row[1] for row in rows}
        self.merging, self._parts = {}, []
        connection.rollback()

    def known(self, connection: Connection, hashes: list[int]) -> dict[int, int]:
        """The seq of each of `hashes` already stored."""
        recent, merging = self.recent, self.merging
        found = {hash_: recent[hash_] for hash_ in hashes if hash_ in recent}
        found.update((hash_, merging[hash_]) for hash_ in hashes if hash_ in merging)
        rest = [hash_ for hash_ in set(hashes) if hash_ not in found]
        if rest:
            rows = connection.exec_driver_sql(_LOOKUP, (bulk.rows_parameter(rest),))
            found.update((row[0], row[1]) for row in rows)
        return found

    def unseen_in_memory(self, hashes: list[int | None]) -> bool:
        """No key repeats within `hashes`, and none is in memory; merged keys are not looked
        at, nor events without one (None)."""
        keyed = set(hashes)
        keyed.discard(None)
        return len(keyed) == len(hashes) - hashes.count(None) \
            and self.recent.keys().isdisjoint(keyed) and self.merging.keys().isdisjoint(keyed)

    def stage(self, hashes: Sequence[int | None], first_seq: int) -> None:
        """Keys stored by the open transaction at consecutive seqs from `first_seq` (None: an
        event without id)."""
        seqs = range(first_seq, first_seq + len(hashes))
        if None in hashes:
            self._staged.extend((hash_, seq) for hash_, seq in zip(hashes, seqs, strict=True)
                                if hash_ is not None)
        else:  # the common case, iterated in C
            self._staged.extend(zip(cast("Sequence[int]", hashes), seqs, strict=True))

    def commit(self) -> None:
        self.recent.update(self._staged)
        self._staged.clear()

    def discard(self) -> None:
        self._staged.clear()

    def merge_if_due(self, connection: Connection) -> bool:
        """Write the next part of a merge under way, or start one when enough keys gathered."""
        if not self._parts:
            due = min(MERGE_MAX, max(self.merge_min, self.merged_seq // MERGE_FRACTION))
            if len(self.recent) < due:
                return False
            self._start_merge()
        part, last = self._parts[-1], len(self._parts) == 1
        with connection.begin():
            connection.exec_driver_sql(_MERGE, (orjson.dumps(part,
                                                             option=orjson.OPT_NON_STR_KEYS),))
            if last:
                connection.exec_driver_sql(_MARK, (self._merging_seq,))
        self._parts.pop()  # only once written: a failed part is retried after `load`
        if last:
            self.merged_seq, self.merging = self._merging_seq, {}
        return True

    def _start_merge(self) -> None:
        """Split the recent keys by range into 2**bits parts of about `merge_chunk` keys."""
        self.merging, self.recent = self.recent, {}
        self._merging_seq = max(self.merged_seq, max(self.merging.values()))
        bits = (len(self.merging) // self.merge_chunk).bit_length()
        parts: list[dict[int, int]] = [{} for _ in range(1 << bits)]
        shift, offset = 64 - bits, 1 << 63  # the top bits of the hash as unsigned
        for hash_, seq in self.merging.items():
            parts[(hash_ + offset) >> shift][hash_] = seq
        self._parts = [part for part in reversed(parts) if part]  # taken from the end: in order
