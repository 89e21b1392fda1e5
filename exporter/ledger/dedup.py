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
keys, one part after each write, each touching only its range's pages. A part leaves memory once
written (its keys are then found in `event_ids` like any merged key); only the last part marks
the merge done. After a crash in between, the parts already written are merged again, harmlessly
(their keys are skipped).

Memory holds the recent keys (about 100 bytes each) and the parts of a merge not yet written:
at most about twice `MERGE_KEYS`, however long the ledger, since a write brings fewer keys than a
part holds. A threshold that grew with the ledger (to cut the pages each merge rewrites) made
memory grow with history (docs/operations.md, "What memory holds").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, cast

import orjson
from sqlalchemy import Connection

from exporter.ledger import bulk

# Merge when the recent keys reach this many. Each merge rewrites the pages of the run it
# touches, so fewer, larger merges write less; this many keys take about 50 MB.
MERGE_KEYS: Final = 500_000
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


# The top bits of a hash read as unsigned: the key range (part of a merge) it belongs to.
_UNSIGNED: Final = 1 << 63


class IdSet:
    """The stored keys as the writer sees them: `load` once, then per write transaction
    `known`, `stage`, and `commit` or `discard`; `merge_if_due` between transactions."""

    def __init__(self, *, merge_keys: int = MERGE_KEYS, merge_chunk: int = MERGE_CHUNK) -> None:
        self.merge_keys = merge_keys
        self.merge_chunk = merge_chunk
        self.recent: dict[int, int] = {}
        # A merge under way: its keys by range (`hash >> _shift` as unsigned), a range emptied
        # once written; `_order` the ranges left to write, the next at the end.
        self._ranges: list[dict[int, int]] = []
        self._shift = 64
        self._order: list[int] = []
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
        # The driver's cursor yields (hash, seq) pairs itself: up to 2 x MERGE_KEYS rows, read
        # 1.75 times faster than through SQLAlchemy's rows (500k: 0.29 s against 0.51 s).
        self.recent = dict(cast(Iterable[tuple[int, int]], rows.cursor))
        self._ranges, self._order = [], []
        connection.rollback()

    def merging_keys(self) -> int:
        """Keys of a merge under way still in memory."""
        return sum(len(self._ranges[index]) for index in self._order)

    def _merging(self, hash_: int) -> int | None:
        return self._ranges[(hash_ + _UNSIGNED) >> self._shift].get(hash_) \
            if self._ranges else None

    def known(self, connection: Connection, hashes: list[int]) -> dict[int, int]:
        """The seq of each of `hashes` already stored."""
        recent = self.recent
        found = {hash_: recent[hash_] for hash_ in hashes if hash_ in recent}
        if self._ranges:
            for hash_ in hashes:
                seq = self._merging(hash_)
                if seq is not None:
                    found[hash_] = seq
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
        if len(keyed) != len(hashes) - hashes.count(None) \
                or not self.recent.keys().isdisjoint(keyed):
            return False
        return not self._ranges or all(self._merging(cast("int", hash_)) is None
                                       for hash_ in keyed)

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
        if not self._order:
            if len(self.recent) < self.merge_keys:
                return False
            self._start_merge()
        index = self._order[-1]
        last = len(self._order) == 1
        with connection.begin():
            connection.exec_driver_sql(_MERGE, (orjson.dumps(self._ranges[index],
                                                             option=orjson.OPT_NON_STR_KEYS),))
            if last:
                connection.exec_driver_sql(_MARK, (self._merging_seq,))
        # Only once written: a failed part is retried after `load`. Its keys are in event_ids.
        self._order.pop()
        self._ranges[index] = {}
        if last:
            self.merged_seq, self._ranges = self._merging_seq, []
        return True

    def _start_merge(self) -> None:
        """Split the recent keys by range into 2**bits parts of about `merge_chunk` keys."""
        keys, self.recent = self.recent, {}
        self._merging_seq = max(self.merged_seq, max(keys.values()))
        bits = (len(keys) // self.merge_chunk).bit_length()
        ranges: list[dict[int, int]] = [{} for _ in range(1 << bits)]
        shift = 64 - bits
        for hash_, seq in keys.items():
            ranges[(hash_ + _UNSIGNED) >> shift][hash_] = seq
        self._ranges, self._shift = ranges, shift
        # Written in key order: taken from the end.
        self._order = [index for index in reversed(range(len(ranges))) if ranges[index]]
