"""A lock that one thread takes back to back and others now and then, fair to the others.

The applier takes the state's lock for every batch, the ingest writer the ledger's gate for
every group. A plain lock that its holder releases and takes again at once, still holding the
GIL, is nearly always taken again by that same thread: a scrape or a read that waited for the
state waited for the applier's whole group, a read's checkpoint for several of the writer's
commits. So the busy thread steps aside between turns while anyone waits (`let_waiting_in`).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Final

# How long the applier lets waiting threads go first, at most (a waiter that stalls must not
# stall ingest).
STEP_ASIDE_SECONDS: Final = 0.1


class FairLock:
    """A lock (`with lock:`) whose occasional takers are not starved by its constant one."""

    __slots__ = ("_lock", "_turn", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turn = threading.Condition(threading.Lock())
        self._waiting = 0

    def acquire(self) -> None:
        if self._lock.acquire(blocking=False):
            return
        with self._turn:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._turn:
                self._waiting -= 1
                self._turn.notify_all()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def let_waiting_in(self) -> None:
        """Called without holding the lock: return once every thread that waited for it has
        had it (or STEP_ASIDE_SECONDS passed)."""
        if not self._waiting:  # unlocked read: a waiter that just arrived is let in next time
            return
        with self._turn:
            self._turn.wait_for(lambda: not self._waiting, STEP_ASIDE_SECONDS)
