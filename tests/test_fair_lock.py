"""The state's lock and the ledger's gate: a thread that takes them back to back lets a waiting
thread in at its next turn instead of taking the lock again first."""

from __future__ import annotations

import threading
import time

from exporter.fairlock import FairLock

TURNS = 400


def _busy(lock: FairLock, turns: list[int], stop: threading.Event) -> None:
    for _ in range(TURNS):
        if stop.is_set():
            return
        with lock:
            turns[0] += 1
            time.sleep(0.001)  # work under the lock, the GIL released (as SQLite does)
        lock.let_waiting_in()


def test_a_waiter_gets_the_lock_at_the_busy_thread_s_next_turn():
    lock = FairLock()
    turns = [0]
    stop = threading.Event()
    busy = threading.Thread(target=_busy, args=(lock, turns, stop))
    busy.start()
    waited: list[int] = []
    try:
        for _ in range(20):
            asked = turns[0]
            with lock:
                waited.append(turns[0] - asked)
            time.sleep(0.003)
    finally:
        stop.set()
        busy.join()
    # With a plain threading.Lock in its place a waiter waited 37 of the busy thread's turns.
    assert max(waited) <= 2, waited
    assert turns[0] > 20  # the busy thread went on meanwhile


def test_uncontended_it_is_a_lock():
    lock = FairLock()
    lock.let_waiting_in()  # nobody waits: returns at once
    with lock:
        assert not lock._lock.acquire(blocking=False)
    assert lock._lock.acquire(blocking=False)
    lock.release()
