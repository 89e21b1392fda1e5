"""SQLite's idempotency keys: recent ones in memory, merged into `event_ids` in sorted runs.

A key must be recognised wherever it is (in memory, merged, or stored before the upgrade that
introduced the split), across restarts, and within one batch; a failed batch leaves no key.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text
from support.events import log_events

from exporter.events import id_hash
from exporter.ledger import Ledger, make_engine, migrate
from exporter.ledger.dedup import IdSet
from exporter.ledger.store import Part, Written, event_rows


def _insert(ledger: Ledger, ids: list[str]) -> list[bool]:
    events = log_events(ids)
    fresh, last_seq, first_seq = ledger.write_events([Part(events, time.time())])
    assert last_seq == _stored_seq(ledger.engine)
    if first_seq is not None:  # the new events hold first_seq..last_seq, in their order
        new = [event.id for event, is_new in zip(events, fresh, strict=True) if is_new]
        with ledger.engine.connect() as connection:
            stored = connection.execute(text(
                "SELECT event_id FROM events WHERE seq BETWEEN :a AND :b ORDER BY seq"),
                {"a": first_seq, "b": last_seq}).scalars().all()
        assert list(stored) == new
    return fresh


def _stored_seq(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT max(seq) FROM events")).scalar() or 0)


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(engine)
    return engine


def _ledger(engine: Engine, merge_keys: int = 10, merge_chunk: int = 1_000) -> Ledger:
    ledger = Ledger(engine)
    ledger._ids = IdSet(merge_keys=merge_keys, merge_chunk=merge_chunk)
    return ledger


def test_sqlite_has_no_unique_index_on_random_hashes(engine: Engine):
    indexes = {index["name"] for index in inspect(engine).get_indexes("events")}
    assert "ix_events_id_hash" not in indexes
    assert {"event_ids", "event_ids_merged"} <= set(inspect(engine).get_table_names())


def test_keys_are_known_in_memory_after_a_merge_and_after_a_restart(engine: Engine):
    ledger = _ledger(engine)
    assert _insert(ledger, [f"a{i}" for i in range(6)]) == [True] * 6
    assert _count(engine, "event_ids") == 0  # below the merge size: in memory only
    assert _insert(ledger, ["a1", "b1", "b1", "a5"]) == [False, True, False, False]
    assert _insert(ledger, [f"c{i}" for i in range(5)]) == [True] * 5  # 12 recent: merged
    assert _count(engine, "event_ids") == 12
    assert _insert(ledger, ["a0", "c4", "d0"]) == [False, False, True]
    ledger.close()

    restarted = _ledger(engine)
    assert _insert(restarted, ["a2", "b1", "c3", "d0", "e0"]) == [False] * 4 + [True]
    assert _count(engine, "events") == 14
    restarted.close()


def test_the_first_write_after_a_restart_knows_the_keys_in_memory(engine: Engine):
    ledger = _ledger(engine, merge_keys=1_000)
    assert _insert(ledger, ["r1", "r2"]) == [True, True]
    ledger.close()
    restarted = _ledger(engine, merge_keys=1_000)
    assert _insert(restarted, ["r1", "r3"]) == [False, True]
    assert _count(engine, "events") == 3
    restarted.close()


def test_a_merge_in_parts_keeps_every_key_known_even_when_cut_short(engine: Engine):
    ledger = _ledger(engine, merge_keys=40, merge_chunk=8)
    first = [f"m{i}" for i in range(40)]
    assert _insert(ledger, first) == [True] * 40  # due: 40 keys in 8 key ranges (40 // 8 -> 8)
    parts = len(ledger._ids._order) + 1  # one part is written after the group
    assert 5 <= parts <= 8
    assert 0 < _count(engine, "event_ids") < 40
    # While the merge is under way, every key is known, merged or not, on both paths.
    assert _insert(ledger, ["m3", "x1", "m39"]) == [False, True, False]
    assert _insert(ledger, ["x2", "x1"]) == [True, False]
    with engine.connect() as connection:
        merged_seq = connection.execute(text("SELECT seq FROM event_ids_merged")).scalar()
    assert not merged_seq  # not done: a restart reads every key again from the events
    ledger.close()

    restarted = _ledger(engine, merge_keys=40, merge_chunk=8)
    # 43 keys in memory again: the merge starts over; the parts written before are skipped.
    assert _insert(restarted, ["m0", "x2", "y1"]) == [False, False, True]
    for number in range(8):
        assert _insert(restarted, [f"z{number}"]) == [True]
    assert _count(engine, "event_ids") == 43
    with engine.connect() as connection:
        known = restarted._ids.known(connection, [id_hash(event_id) for event_id in first])
        stored = dict(connection.execute(text("SELECT id_hash, seq FROM event_ids")).all())
    assert known == {id_hash(event_id): seq for seq, event_id in enumerate(first, start=1)}
    assert all(stored[key] == seq for key, seq in known.items())
    assert restarted._ids.merging_keys() == 0 and restarted._ids.merged_seq > 40
    restarted.close()


def test_new_ids_take_one_statement_and_known_ones_the_general_path(
        engine: Engine, monkeypatch: pytest.MonkeyPatch):
    ledger = _ledger(engine, merge_keys=4)
    general = ledger.insert_events
    calls: list[int] = []

    def counted(*args: object, **kwargs: object) -> Written:
        calls.append(1)
        return general(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "insert_events", counted)
    assert _insert(ledger, ["n1", "n2", "n3", "n4"]) == [True] * 4  # merged after this group
    assert _insert(ledger, ["n5", "n6"]) == [True, True]
    assert calls == []
    assert _insert(ledger, ["n7", "n2"]) == [True, False]  # n2 merged: the statement fails
    assert _insert(ledger, ["n6", "n8"]) == [False, True]  # n6 in memory
    assert _insert(ledger, ["n9", "n9"]) == [True, False]  # repeated within the group
    assert _insert(ledger, ["n10"]) == [True]
    assert len(calls) == 3
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT event_id, seq FROM events ORDER BY seq")).all()
        duplicates = connection.execute(text(
            "SELECT value FROM counters WHERE key LIKE '%duplicate%'")).scalar()
    assert [row[0] for row in stored] == [f"n{i}" for i in range(1, 11)]
    assert [row[1] for row in stored] == list(range(1, 11))
    assert duplicates == 3
    # The writer's keys (in memory or merged) point at the stored rows, whichever path stored.
    with engine.connect() as connection:
        known = ledger._ids.known(connection, [id_hash(row[0]) for row in stored])
    assert known == {id_hash(row[0]): row[1] for row in stored}
    ledger.close()


def test_batches_prepared_apart_are_stored_as_one_group_in_order(engine: Engine):
    """A parse worker prepares each batch's rows; the writer joins those of a group."""
    ledger = _ledger(engine, merge_keys=1_000)
    first, second, third = (log_events([f"{name}{i}" for i in range(size)])
                            for name, size in (("p", 3), ("q", 0), ("r", 2)))
    fresh, last_seq, _ = ledger.write_events([
        Part(first, 100.0, event_rows(first, 100.0)),
        Part(second, 150.0, event_rows(second, 150.0)),
        Part(third, 200.0)])
    assert fresh == [True] * 5
    assert last_seq == 5
    with engine.connect() as connection:
        stored = connection.execute(text(
            "SELECT seq, event_id, received, payload FROM events ORDER BY seq")).all()
    expected = [(seq, event.id, received, event.payload) for seq, (event, received) in enumerate(
        [(event, 100.0) for event in first] + [(event, 200.0) for event in third], start=1)]
    assert [tuple(row) for row in stored] == expected
    ledger.close()


def test_a_failed_statement_stores_nothing_and_the_next_write_recovers(engine: Engine):
    ledger = _ledger(engine, merge_keys=1_000)
    assert _insert(ledger, ["f1"]) == [True]
    ledger._writer_connection().connection.driver_connection.close()  # type: ignore[union-attr]
    with pytest.raises(Exception, match="closed"):
        ledger.write_events([Part(log_events(["f2", "f3"]), time.time())])
    assert _insert(ledger, ["f2", "f1", "f3"]) == [True, False, True]
    assert _count(engine, "events") == 3
    ledger.close()


def test_a_failed_batch_leaves_no_key_behind(engine: Engine):
    ledger = _ledger(engine, merge_keys=1_000)
    with pytest.raises(RuntimeError), ledger.writing() as connection:
        ledger.insert_events(connection, log_events(["x1", "x2"]), time.time())
        raise RuntimeError("the commit never happens")
    assert _insert(ledger, ["x1", "x2", "x1"]) == [True, True, False]
    assert _count(engine, "events") == 2
    ledger.close()


def test_upgrading_a_ledger_keeps_its_keys(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0001")
    with engine.begin() as connection:
        for seq, event_id in enumerate(("old-1", "old-2"), start=1):
            connection.execute(text(
                "INSERT INTO events (seq, id_hash, event_id, source, type, ts, received, "
                "payload) VALUES (:seq, :hash, :id, 'default', 'log.entry', 1, 1, x'7b7d')"),
                {"seq": seq, "hash": id_hash(event_id), "id": event_id})
    migrate(engine)
    assert _count(engine, "event_ids") == 2
    ledger = _ledger(engine)
    assert _insert(ledger, ["old-2", "new-1", "old-1"]) == [False, True, False]
    ledger.close()


def test_the_keys_in_memory_stay_bounded_however_many_are_stored(engine: Engine):
    # Memory holds the recent keys and the parts of a merge not yet written. A part is written
    # after each write, so while writes bring fewer keys than a part holds, that is at most
    # about twice the merge size, whatever the ledger's length (a threshold growing with the
    # ledger made memory grow with history).
    ledger = _ledger(engine, merge_keys=40, merge_chunk=8)
    held = []
    for group in range(60):
        assert _insert(ledger, [f"g{group}-{number}" for number in range(4)]) == [True] * 4
        held.append(len(ledger._ids.recent) + ledger._ids.merging_keys())
    assert max(held) <= 2 * 40 + 4
    assert max(held[30:]) <= max(held[:30]) + 4
    assert _count(engine, "event_ids") >= 160  # merged on the way, part after part
    # Every key is still known, wherever it is.
    assert _insert(ledger, ["g0-0", "g30-1", "g59-3", "new"]) == [False, False, False, True]
    ledger.close()
