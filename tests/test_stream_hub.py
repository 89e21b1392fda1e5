"""The hub fans out the events the applier hands it without reading them back, and reads from
the ledger exactly what it was not handed: in order, no gap, no repeat."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from exporter.reads import stream
from exporter.reads.stream import EventHub, StreamFilter


@dataclass
class _Stored:
    payload: bytes


class _Ledger:
    """The stored events as the hub's `fetch` reads them, counting the reads."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, bytes]] = []
        self.reads = 0

    def store(self, count: int) -> list[_Stored]:
        events = []
        for _ in range(count):
            seq = len(self.rows) + 1
            self.rows.append((seq, 0.0, b'{"n":%d}' % seq))
            events.append(_Stored(b'{"n":%d}' % seq))
        return events

    def fetch(self, after: int, limit: int) -> Sequence[tuple[int, float, bytes]]:
        self.reads += 1
        return [row for row in self.rows if row[0] > after][:limit]


async def _received(hub: EventHub, count: int) -> list[int]:
    subscriber = hub.subscribe(StreamFilter(), None)
    seqs: list[int] = []
    async for batch in hub.events(subscriber, heartbeat=5.0):
        assert batch is not None, "a heartbeat: an event never came"
        seqs += [event.seq for chunk in batch for event in chunk.events]
        if len(seqs) >= count:
            return seqs
    return seqs


def _run(scenario: Scenario) -> tuple[list[int], int]:
    async def main() -> tuple[list[int], int]:
        ledger = _Ledger()
        hub = EventHub(ledger.fetch, max_subscribers=4, buffer_events=1_000)
        hub.start(0)
        runner = asyncio.create_task(hub.run())
        receiving = asyncio.create_task(_received(hub, scenario.expected))
        await asyncio.sleep(0)  # subscribed
        await asyncio.to_thread(scenario.play, hub, ledger)  # from another thread, as the applier
        seqs = await asyncio.wait_for(receiving, 10)
        runner.cancel()
        return seqs, ledger.reads

    return asyncio.run(main())


class Scenario:
    expected = 0

    def play(self, hub: EventHub, ledger: _Ledger) -> None:
        raise NotImplementedError


def test_handed_over_events_go_out_without_reading_the_ledger():
    class Handed(Scenario):
        expected = 6

        def play(self, hub: EventHub, ledger: _Ledger) -> None:
            hub.notify(3, 1, ledger.store(3))
            hub.notify(6, 4, ledger.store(3))

    seqs, reads = _run(Handed())
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert reads == 0


def test_events_not_handed_over_are_read_from_the_ledger_without_a_repeat():
    class Gap(Scenario):
        expected = 9

        def play(self, hub: EventHub, ledger: _Ledger) -> None:
            hub.notify(2, 1, ledger.store(2))
            ledger.store(3)
            hub.notify(5, 0, None)  # seqs unknown to the applier: 3 to 5 only in the ledger
            hub.notify(9, 6, ledger.store(4))

    seqs, reads = _run(Gap())
    assert seqs == list(range(1, 10))
    assert reads >= 1


def test_past_the_cap_the_ledger_has_them(monkeypatch):
    monkeypatch.setattr(stream, "PENDING_EVENTS", 4)

    class Flood(Scenario):
        expected = 12

        def play(self, hub: EventHub, ledger: _Ledger) -> None:
            for first in (1, 5, 9):  # the hub may not have taken the first before the third
                hub.notify(first + 3, first, ledger.store(4))

    seqs, _ = _run(Flood())
    assert seqs == list(range(1, 13))
