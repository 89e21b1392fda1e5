"""The ingest pipeline: a writer that makes events durable, an applier that counts them.

The writer folds everything queued into one transaction of raw events (group commit). After the
commit the group goes to the applier, which applies it to the in-memory state and only then
answers the requests, so a scrape after an answer always includes the batch. The writer spends
its time in SQLite, which releases the GIL, while the applier and the event loop run Python: the
stages overlap on two cores.

The applier writes the state's aggregates as a checkpoint about once a second, naming the last
event they include. A restart (even after kill -9) loads the checkpoint and applies only the
events stored after it, so counters come back exactly, without replaying the whole ledger.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final, TypeVar

import orjson

from exporter.events import Event, validate_one
from exporter.fairlock import FairLock
from exporter.ledger import Ledger
from exporter.ledger.engine import is_disk_full
from exporter.ledger.store import Part, PreparedRows, RowGroup
from exporter.reads.pending import Pending, Row, pending_of
from exporter.state import Changes, FleetState
from exporter.telemetry import Telemetry

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")
# The last seq applied, and the seq of the first of the new events that follow in order; None
# instead of the events when their seqs are not known (the listener reads them from the ledger).
Applied = Callable[[int, int, list[Event] | None], None]

# Large enough to amortise a commit (fsync); small enough to keep a scrape's wait short.
MAX_GROUP_EVENTS: Final = 5_000
# Aggregates reach the ledger at least every this many events, whatever the interval.
CHECKPOINT_EVENTS: Final = 50_000
# After a failed write, loose events are retried (they were never refused to anyone) after this.
WRITE_RETRY_DELAY: Final = 1.0
# Loose events (in-process callback) wait at most this long for the writer.
LOOSE_EVENT_DELAY: Final = 0.05
REPLAY_CHUNK: Final = 5_000


class LedgerUnavailableError(RuntimeError):
    """The transaction failed; nothing of the batch was stored."""


class LedgerFullError(LedgerUnavailableError):
    """The database has no space for the batch (disk full, or EXPORTER_SQLITE_MAX_BYTES)."""


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
    queued: float = 0.0  # perf_counter() at submit, for the batch duration
    rows: PreparedRows | None = None


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    rows: list[RowGroup]
    seq: int  # the last event the rows include
    changes: Changes  # given back to the state if the write fails


@dataclass(slots=True)
class _Committed:
    batches: list[_Batch]
    fresh: list[bool]
    last_seq: int
    first_seq: int | None = None  # the new events hold first_seq..last_seq, in order


def _rows_by_table(groups: list[RowGroup]) -> dict[str, list[Row]]:
    return {group.table.name: group.rows for group in groups}


class IngestPipeline:
    """Owns the writer and applier threads; `submit` for batches, `offer` for callbacks."""

    def __init__(self, *, ledger: Ledger, state: FleetState, lock: FairLock,
                 telemetry: Telemetry, max_pending_events: int = 200_000,
                 checkpoint_seconds: float = 1.0) -> None:
        self.ledger = ledger
        self.state = state
        self.lock = lock
        self.telemetry = telemetry
        self.max_pending_events = max_pending_events
        self.checkpoint_seconds = checkpoint_seconds
        self._queue: deque[_Batch] = deque()
        self._loose: deque[Event] = deque()
        self._committed_groups: queue.Queue[_Committed | None] = queue.Queue()
        self._pending = 0
        self._wake = threading.Condition()
        self._space = threading.Condition()
        self._offered = 0
        self._offer_lock = threading.Lock()
        self._applied = 0
        self._applied_seq = 0
        # The last event the ledger's entity and aggregate rows include (see `synced`).
        self._checkpointed_seq = 0
        # The checkpoint taken from the state and not written yet: its rows are in neither the
        # state's changes nor the ledger, so `pending` hands them out too.
        self._writing: _Checkpoint | None = None
        # Called after each applied batch (the live stream): see `Applied`.
        self.on_applied: Applied | None = None
        self._stopping = False
        # One checkpoint at a time: `settled` must not read the ledger while the applier's
        # checkpoint, already taken from the state, is still being written.
        self._checkpointing = threading.Lock()
        # Why the last write failed, until a write succeeds again: what /ready reports.
        self.write_failure: str | None = None
        self.write_failure_full = False
        self._threads: list[threading.Thread] = []
        telemetry.queue.set_function(lambda: self._pending + len(self._loose))

    # -- producers -----------------------------------------------------------------------------

    def submit(self, events: list[Event], received: float,
               rows: PreparedRows | None = None) -> Future[IngestResult]:
        """Queue a batch (with its `event_rows`, if prepared); the future resolves once it is
        committed and counted."""
        future: Future[IngestResult] = Future()
        with self._wake:
            if self._stopping:
                raise LedgerUnavailableError("the exporter is shutting down")
            if self._pending + len(events) > self.max_pending_events and self._pending:
                raise PipelineBusyError(f"{self._pending} events are waiting for the ledger")
            self._pending += len(events)
            self._queue.append(_Batch(events, future, received, time.perf_counter(), rows))
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
        """Wait until every offered event is committed and counted."""
        target = self._offered
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._space:
            while self._applied < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                with self._wake:
                    self._wake.notify()
                self._space.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    # -- life cycle ----------------------------------------------------------------------------

    def recover(self) -> int:
        """Load the last checkpoint and apply the events stored after it; return how many."""
        with self.lock:
            snapshot = self.ledger.load_snapshot(self.state.budgets.budgets, time.time())
            self.state.restore(snapshot)
            self._applied_seq = self._checkpointed_seq = snapshot.applied_seq
            replayed = self._replay()
            if replayed:
                self._checkpoint()
        return replayed

    def _replay(self) -> int:
        replayed = 0
        while True:
            rows = self.ledger.events_after(self._applied_seq, REPLAY_CHUNK)
            for seq, received, payload in rows:
                try:
                    self.state.apply(validate_one(orjson.loads(payload), received))
                except ValueError as error:  # stored by an older contract; skip, never crash
                    log.warning("stored event %d no longer validates: %s", seq, error)
                self._applied_seq = seq
            replayed += len(rows)
            if len(rows) < REPLAY_CHUNK:
                return replayed

    def start(self) -> None:
        for target, name in ((self._write_loop, "ledger-writer"),
                             (self._apply_loop, "state-applier")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit and count everything queued, write a checkpoint, stop the threads."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        for thread in self._threads:
            thread.join(timeout)

    # -- the writer ----------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._wake:
                if not self._queue and not self._loose:
                    if self._stopping:
                        self._committed_groups.put(None)
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
        self._commit_group(batches, time.perf_counter())
        self.ledger.gate.let_waiting_in()  # a checkpoint waiting goes before the next group

    def _commit_group(self, batches: list[_Batch], started: float) -> None:
        try:
            written = self.ledger.write_events([
                Part(batch.events, batch.received, batch.rows) for batch in batches])
        except Exception as error:  # any database failure: refuse, keep serving
            log.exception("ledger write failed; %d events refused",
                          sum(len(batch.events) for batch in batches))
            self.telemetry.ledger_errors.labels("write").inc()
            self.write_failure_full = is_disk_full(error)
            self.write_failure = str(getattr(error, "orig", None) or type(error).__name__)
            self._refuse(batches, error)
            time.sleep(WRITE_RETRY_DELAY)
            return
        self.write_failure = None
        self.write_failure_full = False
        self.telemetry.commit_duration.observe(time.perf_counter() - started)
        self._committed_groups.put(_Committed(batches, *written))

    def _refuse(self, batches: list[_Batch], error: Exception) -> None:
        for batch in batches:
            if batch.future is None:
                self._loose.extendleft(reversed(batch.events))
                continue
            # The driver's own message, without SQL or parameters (they would echo the payload).
            reason = str(getattr(error, "orig", None) or type(error).__name__)
            refusal = LedgerFullError if is_disk_full(error) else LedgerUnavailableError
            batch.future.set_exception(refusal(reason))
            with self._wake:
                self._pending -= len(batch.events)

    # -- the applier ---------------------------------------------------------------------------

    def _apply_loop(self) -> None:
        last_checkpoint = time.monotonic()
        since_checkpoint = 0
        while True:
            try:
                group = self._committed_groups.get(timeout=self.checkpoint_seconds)
            except queue.Empty:
                group = None if self._stopping else _Committed([], [], self._applied_seq)
            if group is None:
                self._safe_checkpoint()
                return
            if group.batches:
                self._apply(group)
                since_checkpoint += len(group.fresh)
            due = time.monotonic() - last_checkpoint >= self.checkpoint_seconds
            if since_checkpoint and (due or since_checkpoint >= CHECKPOINT_EVENTS):
                self._safe_checkpoint()
                last_checkpoint, since_checkpoint = time.monotonic(), 0

    def _apply(self, group: _Committed) -> None:
        """Each batch under the lock on its own, answered and announced at once: a scrape or a
        read waits for one batch, not for a group of up to MAX_GROUP_EVENTS. That needs each
        batch's last seq; when the ledger cannot say (`first_seq` None), the whole group is
        applied first and answered after."""
        if group.first_seq is None:
            self._apply_whole(group)
            return
        seq = group.first_seq - 1
        for batch, fresh in self._per_batch(group):
            with self.lock:
                new = self._apply_batch(batch, fresh)
                first, seq = seq + 1, seq + len(new)
                self._applied_seq = max(self._applied_seq, seq)
                # Before the answer: whoever was answered finds its events in `_applied_seq`.
                self._answer_batch(batch, len(new))
            self._notify_applied(first, new)
            self.lock.let_waiting_in()

    def _apply_whole(self, group: _Committed) -> None:
        with self.lock:
            accepted = [(batch, len(self._apply_batch(batch, fresh)))
                        for batch, fresh in self._per_batch(group)]
            self._applied_seq = max(self._applied_seq, group.last_seq)
            for batch, count in accepted:
                self._answer_batch(batch, count)
        self._notify_applied(0, None)

    def _apply_batch(self, batch: _Batch, fresh: list[bool]) -> list[Event]:
        """Called under the lock: the batch's new events counted, its duplicates noted; the new
        events."""
        state = self.state
        if all(fresh):
            state.apply_all(batch.events)
            return batch.events
        new: list[Event] = []
        for event, is_new in zip(batch.events, fresh, strict=True):
            if is_new:
                state.apply(event)
                new.append(event)
            else:
                state.count_duplicate(event.type)
        return new

    def _notify_applied(self, first_seq: int, events: list[Event] | None) -> None:
        if self.on_applied is not None:
            try:
                self.on_applied(self._applied_seq, first_seq, events)
            except Exception:  # a subscriber's trouble never stops the applier
                log.exception("the applied-events listener failed")

    @staticmethod
    def _per_batch(group: _Committed) -> Iterator[tuple[_Batch, list[bool]]]:
        offset = 0
        for batch in group.batches:
            yield batch, group.fresh[offset:offset + len(batch.events)]
            offset += len(batch.events)

    def _answer_batch(self, batch: _Batch, accepted: int) -> None:
        count = len(batch.events)
        if batch.future is None:
            with self._space:
                self._applied += count
                self._space.notify_all()
            return
        self.telemetry.batch_duration.observe(time.perf_counter() - batch.queued)
        batch.future.set_result(IngestResult(accepted, count - accepted))
        with self._wake:
            self._pending -= count

    def _prepare_checkpoint(self) -> _Checkpoint:
        """Called under the state lock: the rows of the state as of `_applied_seq`."""
        changes = self.state.take_changes()
        self._writing = _Checkpoint(self.ledger.prepare_checkpoint(changes, self._applied_seq),
                                    self._applied_seq, changes)
        return self._writing

    def _checkpoint(self) -> None:
        self._write_checkpoint(self._prepare_checkpoint(), locked=True)

    def _write_checkpoint(self, prepared: _Checkpoint, *, locked: bool = False) -> None:
        """Write the rows; when the write fails, the state gets its changes back, so the next
        checkpoint writes them (a later checkpoint must never name events whose changes are in
        no row, or a restart would skip them)."""
        started = time.perf_counter()
        try:
            self.ledger.write_checkpoint(prepared.rows)
        except Exception:
            self.telemetry.ledger_errors.labels("write").inc()
            with contextlib.nullcontext() if locked else self.lock:
                self.state.give_back(prepared.changes)
                self._writing = None
            raise
        # Together under the lock: a `pending` copy finds these rows either still being
        # written or written, never in neither.
        with contextlib.nullcontext() if locked else self.lock:
            self._checkpointed_seq = max(self._checkpointed_seq, prepared.seq)
            self._writing = None
        self.telemetry.commit_duration.observe(time.perf_counter() - started)

    @property
    def applied_seq(self) -> int:
        with self.lock:
            return self._applied_seq

    def synced(self) -> None:
        """Return once the ledger's entity and aggregate rows hold every event acknowledged
        before the call: what the read API reads, so an acknowledged event is visible at once.
        Readers arriving together share one checkpoint; with nothing new, nothing is written."""
        # No lock: every answered batch is in `_applied_seq` before its answer (see `_apply`).
        target = self._applied_seq
        if self._checkpointed_seq >= target:
            return
        with self._checkpointing:
            if self._checkpointed_seq >= target:
                return  # another reader's checkpoint covered it
            with self.lock:
                prepared = self._prepare_checkpoint()
            self._write_checkpoint(prepared)

    def pending(self) -> Pending:
        """The state's rows that no written checkpoint holds, as of now: what the read API lays
        over the ledger's rows (exporter/reads/pending.py) instead of writing a checkpoint."""
        with self.lock:
            now = self.ledger.prepare_checkpoint(self.state.pending_changes(), self._applied_seq)
            writing = self._writing
            checkpointed = self._checkpointed_seq
        return pending_of(
            checkpointed,
            None if writing is None else (writing.seq, _rows_by_table(writing.rows)),
            _rows_by_table(now))

    def _safe_checkpoint(self) -> None:
        try:
            # Only copying the rows holds the lock that scrapes wait for; the write does not.
            with self._checkpointing:
                with self.lock:
                    prepared = self._prepare_checkpoint()
                self._write_checkpoint(prepared)
        except Exception:
            # The events are durable and the state kept its changes: the next checkpoint
            # writes them.
            log.exception("checkpoint failed; it is tried again with the next one")

    def settled(self, action: Callable[[], ResultT]) -> ResultT:
        """Run `action` under the state lock right after a checkpoint: the ledger's aggregates
        then hold all the state does (a new budget's spend, read from the daily sums, is exact).
        Rare, admin-driven: ingest waits for one checkpoint write meanwhile."""
        with self._checkpointing, self.lock:
            # Raises, the changes given back to the state, when the write fails.
            self._write_checkpoint(self._prepare_checkpoint(), locked=True)
            return action()
