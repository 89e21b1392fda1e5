"""Retention: raw events and ended entities older than the retention period leave the ledger.

Counters, histograms and the per-day cost and token sums are never pruned, so no metric ever
decreases and /costs keeps every day. Events go in small chunks in ledger order, each its own
short transaction, with a pause between chunks, so ingest and scrapes never wait long; a pass
ends at the first chunk reaching events received after the cutoff, so it reads only what it
removes; only events the last checkpoint includes are pruned (a restart never needs them).
With an archive directory, each chunk is first appended to a gzip NDJSON file per day (the day
the exporter received the events), in the stored canonical form, so `zcat | POST
/api/v1/events` restores them elsewhere.
"""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, and_, delete, func, or_, select, tuple_
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from exporter.budgets import SECONDS_PER_DAY
from exporter.events import TERMINAL_AGENT_STATUSES
from exporter.ledger import schema

log = logging.getLogger(__name__)

CHUNK: Final = 5_000
PAUSE_SECONDS: Final = 0.05
# After each chunk the pruner rests this many times as long as the chunk took, so it works at
# most a quarter of the time, less when ingest slows its chunks down. With only the 50 ms pause
# it pruned about 12,000 events a second under full ingest in chunks of 5,000, working about
# 90% of the time, and that ingest was 11 to 18% slower (docs/benchmarks.md).
REST_PER_WORK: Final = 3.0
ARCHIVE_PREFIX: Final = "events-"
ARCHIVE_SUFFIX: Final = ".ndjson.gz"


@dataclass(slots=True)
class PruneResult:
    events: int = 0
    agents: int = 0
    tasks: int = 0
    runs: int = 0
    steps: int = 0
    archive_files: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "agents": self.agents, "tasks": self.tasks,
                "runs": self.runs, "steps": self.steps,
                "archive_files": sorted(self.archive_files)}


def archive_name(received: float) -> str:
    return ARCHIVE_PREFIX + time.strftime("%Y-%m-%d", time.gmtime(received)) + ARCHIVE_SUFFIX


class Pruner:
    """Removes what is older than a cutoff; `stop` interrupts it between chunks."""

    def __init__(self, engine: Engine, *, archive_dir: Path | None = None, chunk: int = CHUNK,
                 pause: float = PAUSE_SECONDS, rest: float = REST_PER_WORK,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.engine = engine
        self.archive_dir = archive_dir
        self.chunk = chunk
        self.pause = pause
        self.rest = rest
        self.clock = clock
        self.sleep = sleep

    def _rest(self, started: float) -> None:
        """Between chunks: `pause`, or `rest` times as long as the chunk since `started` took."""
        self.sleep(max(self.pause, (self.clock() - started) * self.rest))

    def prune(self, before: float, stop: threading.Event | None = None) -> PruneResult:
        result = PruneResult()
        self._events(before, result, stop)
        self._entities(before, result)
        return result

    def _events(self, before: float, result: PruneResult, stop: threading.Event | None) -> None:
        events = schema.events
        with self.engine.connect() as connection:
            limit = connection.execute(select(schema.checkpoint.c.applied_seq)).scalar() or 0
            newest = connection.execute(select(func.max(events.c.seq))).scalar() or 0
        # The newest event stays: SQLite gives a new row the highest seq + 1, so with it gone a
        # seq would be handed out twice (the writer, the checkpoint and the stream count on
        # seqs only growing).
        limit = min(limit, newest - 1)
        # The payloads only when they are archived: reading them costs the GIL and the disk.
        columns = [events.c.seq, events.c.received]
        if self.archive_dir is not None:
            columns.append(events.c.payload)
        after = 0
        while stop is None or not stop.is_set():
            started = self.clock()
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(*columns).where(events.c.seq > after, events.c.seq <= limit)
                    .order_by(events.c.seq).limit(self.chunk)).all()
            old = [row for row in rows if row[1] < before]
            if old:
                if self.archive_dir is not None:
                    self._archive([(seq, received, bytes(payload))
                                   for seq, received, payload in old], result)
                # By seq range, not a list of seqs: one short statement, little Python.
                chunk = and_(events.c.seq >= old[0][0], events.c.seq <= old[-1][0],
                             events.c.received < before)
                with self.engine.begin() as connection:
                    if self.engine.dialect.name == "sqlite":
                        # Their ids stay known (ledger/dedup.py): a resend is still a duplicate.
                        connection.execute(sqlite_insert(schema.event_ids).from_select(
                            ["id_hash", "seq"], select(events.c.id_hash, events.c.seq).where(
                                chunk, events.c.id_hash.is_not(None)))
                            .on_conflict_do_nothing(index_elements=["id_hash"]))
                    connection.execute(delete(events).where(chunk))
                result.events += len(old)
            # Events are stored in about the order they were received: a chunk reaching one
            # received after the cutoff ends the pass, which never reads the rest of the ledger
            # (the few stored out of order, seconds apart, go with the next pass).
            if len(rows) < self.chunk or len(old) < len(rows):
                return
            after = rows[-1][0]
            self._rest(started)

    def _archive(self, rows: Sequence[tuple[int, float, bytes]], result: PruneResult) -> None:
        if self.archive_dir is None:
            return
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        by_day: dict[str, list[bytes]] = {}
        for _seq, received, payload in rows:
            by_day.setdefault(archive_name(received), []).append(payload)
        for name, payloads in by_day.items():
            path = self.archive_dir / name
            # Appending adds a gzip member; readers (zcat, gzip.open) read them all in turn.
            with path.open("ab") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as archive:
                archive.write(b"\n".join(payloads) + b"\n")
                archive.flush()
                raw.flush()
                os.fsync(raw.fileno())
            result.archive_files.add(name)

    def _entities(self, before: float, result: PruneResult) -> None:
        agents, tasks = schema.agents, schema.tasks
        runs, steps = schema.workflow_runs, schema.steps
        ended_agent = and_(or_(agents.c.deleted.is_(True),
                               agents.c.status.in_(sorted(TERMINAL_AGENT_STATUSES))),
                           agents.c.last_activity < before)
        result.agents += self._delete_keys(agents, ("source", "agent_id"), ended_agent)
        result.tasks += self._delete_keys(tasks, ("source", "task_id"),
                                          tasks.c.ended_at < before)
        while True:  # a run and its steps go together, a chunk of runs per transaction
            started = self.clock()
            with self.engine.begin() as connection:
                found = connection.execute(select(runs.c.source, runs.c.run_id).where(
                    runs.c.ended_at < before).limit(self.chunk)).all()
                if found:
                    keys = [tuple(row) for row in found]
                    result.steps += connection.execute(delete(steps).where(
                        tuple_(steps.c.source, steps.c.run_id).in_(keys))).rowcount
                    connection.execute(delete(runs).where(
                        tuple_(runs.c.source, runs.c.run_id).in_(keys)))
            result.runs += len(found)
            if len(found) < self.chunk:
                return
            self._rest(started)

    def _delete_keys(self, table: Any, keys: tuple[str, str], condition: Any) -> int:
        """Rows matching `condition`, a chunk per transaction, each chunk one statement (a
        statement per row held the write lock, and ingest, for a quarter of a second)."""
        columns = (table.c[keys[0]], table.c[keys[1]])
        deleted = 0
        while True:
            started = self.clock()
            with self.engine.begin() as connection:
                found = connection.execute(select(*columns).where(condition)
                                           .limit(self.chunk)).all()
                if found:
                    connection.execute(delete(table).where(
                        tuple_(*columns).in_([tuple(row) for row in found])))
            deleted += len(found)
            if len(found) < self.chunk:
                return deleted
            self._rest(started)


def expire_archive(archive_dir: Path, keep_days: int, now: float) -> list[str]:
    """Remove archive files of days more than `keep_days` before `now`; their names."""
    if not archive_dir.is_dir():
        return []
    oldest = archive_name(now - keep_days * SECONDS_PER_DAY)
    removed = []
    for path in sorted(archive_dir.glob(ARCHIVE_PREFIX + "*" + ARCHIVE_SUFFIX)):
        if path.name < oldest:
            path.unlink()
            removed.append(path.name)
    return removed


class RetentionThread:
    """Prunes in the background every `interval` seconds: what is older than `days`."""

    def __init__(self, pruner: Pruner, *, days: int, archive_days: int, interval: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.pruner = pruner
        self.days = days
        self.archive_days = archive_days
        self.interval = interval
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def prune_once(self) -> PruneResult:
        """One pass at the clock's now: what the thread does every `interval`."""
        now = self.clock()
        result = self.pruner.prune(now - self.days * SECONDS_PER_DAY, self._stop)
        if self.pruner.archive_dir is not None:
            expire_archive(self.pruner.archive_dir, self.archive_days, now)
        if result.events or result.agents or result.tasks or result.runs:
            log.info("retention pruned %s", result.as_dict())
        return result

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.prune_once()
            except Exception:  # the ledger is busy or refusing: try again next time
                log.exception("retention failed; retrying in %.0f s", self.interval)
