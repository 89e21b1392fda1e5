"""Cumulative counters as increases: each series' last point, kept by this process.

A cumulative point carries the running total since its `start_time_unix_nano`. The increase is
the value minus the last one seen of the same series and start; a later start is a reset (the
sender restarted and counts from 0 again); an earlier start or an older point is stale and moves
nothing. What this process never saw of a series cannot be told apart from what an earlier
process already counted, so a series first seen here counts from its start only when it started
after this process did (or after the last series was forgotten); otherwise its first point only
sets the base. The cost is at most one export interval per running sender and exporter restart,
never a double count.

The last points are advanced as a request is translated, so that two requests in flight never
count one increase twice, and put back (`rollback`) when their events could not be stored: the
sender's retry then finds them as they were.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

# Series remembered: ten thousand sessions of Claude Code's dozen series, twice over.
MAX_SERIES: Final = 250_000


@dataclass(frozen=True, slots=True)
class Point:
    start: int
    time: int
    value: float


@dataclass(slots=True)
class Reservation:
    """The last points one request advanced: (series, point before, point set)."""

    changes: list[tuple[bytes, Point | None, Point]] = field(default_factory=list)


class CumulativeCounters:
    """Turns the cumulative points of many series into increases; thread-safe."""

    def __init__(self, *, max_series: int = MAX_SERIES,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.max_series = max_series
        self.clock = clock
        # A series first seen here counts from its start only if it started after this.
        self.trusted_since = clock()
        self._last: OrderedDict[bytes, Point] = OrderedDict()
        self._lock = threading.Lock()

    def advance(self, reservation: Reservation, series: bytes, point: Point) -> float:
        """The increase `point` brings to `series` (0 for a repeat, a stale or a base point)."""
        with self._lock:
            before = self._last.get(series)
            if before is None:
                increase = point.value if point.start >= self.trusted_since else 0.0
            elif point.start == before.start:
                if point.time <= before.time:
                    return 0.0  # the same point again (a resend), or an older one
                # Lower with the same start breaks the protocol: read as counting from 0 again.
                increase = point.value - before.value if point.value >= before.value \
                    else point.value
            elif point.start > before.start:
                increase = point.value  # a reset: the sender restarted its counter
            else:
                return 0.0  # a point of a generation already replaced
            self._last[series] = point
            self._last.move_to_end(series)
            reservation.changes.append((series, before, point))
            while len(self._last) > self.max_series:
                self._last.popitem(last=False)
                self.trusted_since = max(self.trusted_since, self.clock())
            return increase

    def rollback(self, reservation: Reservation) -> None:
        """Put back what a request advanced, where nothing advanced it since."""
        with self._lock:
            for series, before, point in reversed(reservation.changes):
                if self._last.get(series) != point:
                    continue
                if before is None:
                    del self._last[series]
                else:
                    self._last[series] = before
            reservation.changes.clear()
