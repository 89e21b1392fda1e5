"""Cumulative counters as increases: resets, stale points, resends, a restart, a failed store."""

from __future__ import annotations

from exporter.otlp.cumulative import CumulativeCounters, Point, Reservation

SECOND = 10**9
STARTED = 1_000 * SECOND  # when the exporter process started


class Clock:
    def __init__(self) -> None:
        self.now = STARTED

    def __call__(self) -> int:
        return self.now


def counters(clock: Clock | None = None, **options: int) -> CumulativeCounters:
    return CumulativeCounters(clock=clock or Clock(), **options)


def advance(counter: CumulativeCounters, series: bytes, start: int, time: int,
            value: float) -> float:
    return counter.advance(Reservation(), series, Point(start, time, value))


def test_increases_resets_repeats_and_stale_points():
    counter = counters()
    start = STARTED + SECOND
    assert advance(counter, b"s", start, start + 60 * SECOND, 5.0) == 5.0
    assert advance(counter, b"s", start, start + 120 * SECOND, 7.5) == 2.5
    assert advance(counter, b"s", start, start + 120 * SECOND, 7.5) == 0.0  # a resend
    assert advance(counter, b"s", start, start + 90 * SECOND, 6.0) == 0.0  # an older point
    restarted = start + 200 * SECOND  # the sender restarted: a new start, from 0
    assert advance(counter, b"s", restarted, restarted + 60 * SECOND, 1.0) == 1.0
    assert advance(counter, b"s", start, start + 300 * SECOND, 9.0) == 0.0  # the old generation
    assert advance(counter, b"t", start, start + 60 * SECOND, 3.0) == 3.0  # series apart


def test_a_series_older_than_the_process_only_sets_its_base():
    """What an earlier exporter process counted of it cannot be known: never count it twice."""
    counter = counters()
    before = STARTED - 600 * SECOND
    assert advance(counter, b"s", before, STARTED + SECOND, 40.0) == 0.0
    assert advance(counter, b"s", before, STARTED + 61 * SECOND, 42.0) == 2.0


def test_a_failed_store_puts_the_points_back_for_the_retry():
    counter = counters()
    start = STARTED + SECOND
    assert advance(counter, b"s", start, start + 60 * SECOND, 5.0) == 5.0
    failed = Reservation()
    assert counter.advance(failed, b"s", Point(start, start + 120 * SECOND, 8.0)) == 3.0
    assert counter.advance(failed, b"new", Point(start, start + 120 * SECOND, 1.0)) == 1.0
    counter.rollback(failed)
    assert advance(counter, b"s", start, start + 120 * SECOND, 8.0) == 3.0
    assert advance(counter, b"new", start, start + 120 * SECOND, 1.0) == 1.0


def test_a_forgotten_series_comes_back_as_a_base_only():
    clock = Clock()
    counter = counters(clock, max_series=2)
    start = STARTED + SECOND
    for series in (b"a", b"b", b"c"):  # `a` is forgotten, and the process trusts less
        clock.now = start + 60 * SECOND
        assert advance(counter, series, start, start + 60 * SECOND, 1.0) == 1.0
    assert advance(counter, b"a", start, start + 120 * SECOND, 3.0) == 0.0
    assert advance(counter, b"a", start, start + 180 * SECOND, 4.0) == 1.0
