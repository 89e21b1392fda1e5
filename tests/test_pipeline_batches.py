"""The applier applies, answers and announces each batch of a group on its own: whoever got an
answer finds its events in `applied_seq` (what reads wait for), and the live stream is handed
each batch's new events with their seqs, exactly as the ledger stores them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from support.events import log_events

from exporter.config import parse_config
from exporter.ledger import migrate
from exporter.ledger.store import Part, Written
from exporter.pipeline import IngestPipeline, IngestResult, _Batch, _Committed
from exporter.service import Exporter, build_exporter
from exporter.settings import Settings


def _applied(pipeline: IngestPipeline, batches: list[list[str]],
             written: Written | None = None) -> tuple[list[int], list[tuple[int, int, list[str]]]]:
    """Write the batches as one group and apply it: the applied seq each batch's answer saw,
    and what the stream was handed."""
    parts = [_Batch(log_events(ids), Future(), time.time()) for ids in batches]
    stored = pipeline.ledger.write_events([Part(batch.events, batch.received)
                                           for batch in parts])
    seen: list[int] = []
    handed: list[tuple[int, int, list[str]]] = []
    for batch in parts:
        assert batch.future is not None

        def answered(_future: Future[IngestResult]) -> None:
            seen.append(pipeline._applied_seq)

        batch.future.add_done_callback(answered)
    pipeline.on_applied = lambda seq, first, events: handed.append(
        (seq, first, [] if events is None else [str(event.id) for event in events]))
    pipeline._apply(_Committed(parts, *(written or stored)))
    return seen, handed


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    """Built and recovered, its threads not started: the test applies groups itself."""
    built = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"),
                           registry=CollectorRegistry(), config=parse_config({}))
    migrate(built.ledger.engine)
    built.pipeline.recover()
    yield built
    built.close()


def test_each_batch_is_answered_with_its_own_events_applied(exporter: Exporter):
    seen, handed = _applied(exporter.pipeline, [["a", "b"], ["c", "a", "d"], ["e"]])
    assert seen == [2, 4, 5]  # "a" again is a duplicate: no seq
    assert handed == [(2, 1, ["a", "b"]), (4, 3, ["c", "d"]), (5, 5, ["e"])]
    with exporter.ledger.engine.connect() as connection:
        stored = connection.execute(text("SELECT seq, event_id FROM events")).all()
    assert [tuple(row) for row in stored] == [(1, "a"), (2, "b"), (3, "c"), (4, "d"),
                                              (5, "e")]


def test_a_group_whose_seqs_are_unknown_is_answered_whole(exporter: Exporter):
    # As PostgreSQL's sequence after refused rows: the ledger cannot say which seq is whose.
    seen, handed = _applied(exporter.pipeline, [["a"], ["b"]], Written([True], 2, None))
    assert seen == [2, 2]
    assert handed == [(2, 0, [])]
