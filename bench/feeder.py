"""An exporter in this process, fed the bench's workload at a simulated clock.

Over HTTP the exporter stamps each batch with the wall clock as it arrives (`received`), and
retention prunes raw events by that stamp; the ingest pipeline itself takes `received` from its
caller (`IngestPipeline.submit`). Feeding the pipeline directly is how a benchmark makes a day
of history in a minute: each batch is received when its newest event happened, at whatever
simulated time the caller chose.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from bench import workload
from exporter.events import validate_batch
from exporter.pipeline import IngestResult
from exporter.service import Exporter, build_exporter
from exporter.settings import Settings

# Batches queued at once: enough to keep the writer busy, few enough to stay under its bound on
# pending events (200,000).
IN_FLIGHT = 40


class FedExporter:
    """`build_exporter` on a SQLite ledger, started, without HTTP and without its own retention
    thread (the caller prunes, at its own clock)."""

    def __init__(self, database: Path, *, synchronous: str) -> None:
        settings = Settings(database_url=f"sqlite:///{database}", retention_days=0,
                            sqlite_synchronous=synchronous)  # type: ignore[arg-type]
        self.database = database
        self.exporter: Exporter = build_exporter(settings)
        self.exporter.start()

    def feed(self, events: int, batch_size: int, *, start: float, spacing: float) -> int:
        """About `events` events of episodes starting at `start`, `spacing` seconds apart; each
        batch received at its newest event's time. Returns the events accepted, once they are
        committed and a checkpoint includes them (only those may be pruned)."""
        pending: deque[Future[IngestResult]] = deque()
        accepted = 0
        for raws in workload.ingest_batches(events, batch_size, seed=secrets.randbits(48),
                                            start=start, spacing=spacing):
            received = max(map(workload.timestamp, raws))
            validated, problems = validate_batch(list(raws), received)
            if problems:
                raise RuntimeError(f"the workload broke the contract: {problems[0]}")
            pending.append(self.exporter.pipeline.submit(validated, received))
            if len(pending) >= IN_FLIGHT:
                accepted += pending.popleft().result().accepted
        accepted += sum(future.result().accepted for future in pending)
        self.exporter.pipeline.synced()
        return accepted

    def close(self) -> None:
        self.exporter.close()


def ledger_files(database: Path) -> Iterator[Path]:
    """The database file and its WAL and shared-memory files, those that exist."""
    return (path for path in database.parent.glob(database.name + "*") if path.is_file())
