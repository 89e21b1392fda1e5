"""The ingest pipeline: one writer thread, group commit, acknowledgement after the commit.

Requests hand validated batches to the writer and wait on a future; the writer folds everything
queued into one transaction (events + the state they changed), commits, and only then resolves
the futures. While it waits on the database, which releases the GIL, the event loop parses the
next requests: parsing and writing overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

from exporter.events import Event
from exporter.ledger import Ledger
from exporter.state import FleetState
from exporter.telemetry import Telemetry

log = logging.getLogger(__name__)

# Large enough to amortise a commit (fsync); small enough to keep a scrape's wait short.
MAX_GROUP_EVENTS: Final = 5_000
# After a failed write, loose events are retried (they were never refused to anyone) after this.
WRITE_RETRY_DELAY: Final = 1.0
# Loose events (in-process callback) wait at most this long for the writer.
LOOSE_EVENT_DELAY: Final = 0.05


class LedgerUnavailableError(RuntimeError):
    """The transaction failed; nothing of the batch was stored and the state was reloaded."""


class PipelineBusyError(RuntimeError):
    """Too many events are waiting for the writer; try again shortly."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int


@dataclass(slots=True)
class _Batch:
    events: list[Event]
    future: Future[IngestResult] | None
    received: float


class IngestPipeline:
    """Owns the writer thread; `submit` for batches that need an answer, `offer` for callbacks."""

    def __init__(self, *, ledger: Ledger, state: FleetState, lock: threading.Lock,
                 telemetry: Telemetry, max_pending_events: int = 200_000) -> None:
        self.ledger = ledger
        self.state = state
        self.lock = lock
        self.telemetry = telemetry
        self.max_pending_events = max_pending_events
        self._queue: deque[_Batch] = deque()
        self._loose: deque[Event] = deque()
        self._pending = 0
        self._wake = threading.Condition()
        self._space = threading.Condition()
        self._offered = 0
        self._offer_lock = threading.Lock()
        self._committed = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        telemetry.queue.set_function(lambda: self._pending + len(self._loose))

    # -- producers -----------------------------------------------------------------------------

    def submit(self, events: list[Event], received: float) -> Future[IngestResult]:
        """Queue a batch; the future resolves after its durable commit."""
        future: Future[IngestResult] = Future()
        with self._wake:
            if self._stopping:
                raise LedgerUnavailableError("the exporter is shutting down")
            if self._pending + len(events) > self.max_pending_events and self._pending:
                raise PipelineBusyError(f"{self._pending} events are waiting for the ledger")
            self._pending += len(events)
            self._queue.append(_Batch(events, future, received))
            self._wake.notify()
        return future

    def offer(self, event: Event) -> None:
        """Queue one event without waiting for its commit (`flush` waits for everything)."""
        if len(self._loose) >= self.max_pending_events:
            with self._space:
                self._space.wait_for(lambda: len(self._loose) < self.max_pending_events)
        with self._offer_lock:
            self._loose.append(event)
            self._offered += 1
        if len(self._loose) >= 500:
            with self._wake:
                self._wake.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every offered event is committed."""
        target = self._offered
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._space:
            while self._committed < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                with self._wake:
                    self._wake.notify()
                self._space.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    # -- the writer ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop the writer."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._queue and not self._loose:
                    if self._stopping:
                        return
                    self._wake.wait(LOOSE_EVENT_DELAY)
                batches = self._take_group()
            if batches:
                self._write(batches)

    def _take_group(self) -> list[_Batch]:
        batches: list[_Batch] = []
        size = 0
        while self._queue and size < MAX_GROUP_EVENTS:
            batch = self._queue.popleft()
            batches.append(batch)
            size += len(batch.events)
        loose: list[Event] = []
        while self._loose and size < MAX_GROUP_EVENTS:
            loose.append(self._loose.popleft())
            size += 1
        if loose:
            batches.append(_Batch(loose, None, time.time()))
        return batches

    def _write(self, batches: list[_Batch]) -> None:
        events = [event for batch in batches for event in batch.events]
        started = time.perf_counter()
        try:
            fresh = self._commit(events, batches[0].received)
        except Exception as error:  # any database failure: refuse, reload, keep serving
            log.exception("ledger write failed; %d events refused", len(events))
            self.telemetry.ledger_errors.labels("write").inc()
            self._reload()
            self._finish(batches, None, error)
            time.sleep(WRITE_RETRY_DELAY)
            return
        self.telemetry.commit_duration.observe(time.perf_counter() - started)
        self._finish(batches, fresh, None)

    def _commit(self, events: list[Event], received: float) -> list[bool]:
        with self.lock, self.ledger.engine.begin() as connection:
            fresh = self.ledger.insert_events(connection, events, received)
            state = self.state
            for event, is_new in zip(events, fresh, strict=True):
                if is_new:
                    state.apply(event)
                else:
                    state.count_duplicate(event.type)
            self.ledger.write_changes(connection, state.take_changes())
        return fresh

    def _reload(self) -> None:
        try:
            with self.lock:
                self.state.restore(self.ledger.load_snapshot(self.state.budgets.budgets,
                                                             time.time()))
        except Exception:
            self.telemetry.ledger_errors.labels("read").inc()
            log.exception("reloading the state from the ledger failed")

    def _finish(self, batches: list[_Batch], fresh: list[bool] | None,
                error: Exception | None) -> None:
        offset = 0
        for batch in batches:
            count = len(batch.events)
            if batch.future is None and fresh is None:
                self._loose.extendleft(reversed(batch.events))
            elif batch.future is None:
                with self._space:
                    self._committed += count
                    self._space.notify_all()
            elif fresh is None:
                batch.future.set_exception(LedgerUnavailableError(str(error)))
            else:
                accepted = sum(fresh[offset:offset + count])
                batch.future.set_result(IngestResult(accepted, count - accepted))
            if batch.future is not None:
                with self._wake:
                    self._pending -= count
            offset += count
