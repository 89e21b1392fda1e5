"""Reading the raw event export back: events per second, and the exporter's memory meanwhile;
Python's sqlite3 reading the same rows straight from the ledger file as the floor."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from bench.server import ExporterServer, http_client

MEMORY_SAMPLE_SECONDS = 0.05
# Rows per fetch of the floor: the exporter's export reads chunks of 5,000 too.
FETCH_ROWS = 5_000


class MemorySampler:
    """The exporter's RSS (server and parse workers) every few tens of milliseconds."""

    def __init__(self, server: ExporterServer) -> None:
        self.server = server
        self.samples: list[tuple[float, int]] = []  # (seconds since the start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - started,
                                 self.server.memory()["VmRSS"]))
            self._stop.wait(MEMORY_SAMPLE_SECONDS)

    def growth(self, before: int) -> dict[str, int]:
        """The peak over `before`, and how much of it came in the second half: memory that
        follows the export's size grows all along; a bounded cache fills and stays."""
        end = self.samples[-1][0] if self.samples else 0.0
        first = max((rss for at, rss in self.samples if at <= end / 2), default=before)
        peak = max((rss for _, rss in self.samples), default=before)
        return {"rss_before_bytes": before, "rss_peak_bytes": peak,
                "rss_growth_bytes": peak - before,
                "rss_second_half_growth_bytes": peak - max(first, before)}


def export_everything(server: ExporterServer, headers: dict[str, str]) -> dict[str, Any]:
    """The whole ledger through GET /api/v1/events/export, lines counted as they stream."""
    lines = size = 0
    before = server.memory()["VmRSS"]
    with http_client() as client, MemorySampler(server) as sampler:
        started = time.perf_counter()
        with client.stream("GET", f"{server.url}/api/v1/events/export",
                           headers=headers) as response:
            response.raise_for_status()
            for chunk in response.iter_raw():
                lines += chunk.count(b"\n")
                size += len(chunk)
        seconds = time.perf_counter() - started
    return {"events": lines, "bytes": size, "seconds": seconds,
            "events_per_second": lines / seconds, **sampler.growth(before),
            "rss_samples": sampler.samples}


def sqlite_read(database: Path) -> dict[str, Any]:
    """Python's sqlite3 reading the stored events in ledger order and joining them into lines,
    as the export does, with nothing else: the floor for a Python exporter on this ledger."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    rows = 0
    try:
        started = time.perf_counter()
        cursor = connection.execute("SELECT seq, payload FROM events ORDER BY seq")
        while chunk := cursor.fetchmany(FETCH_ROWS):
            b"\n".join(payload for _seq, payload in chunk)
            rows += len(chunk)
        seconds = time.perf_counter() - started
    finally:
        connection.close()
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds}
