"""Scraping /metrics over HTTP: latency percentiles, and a scraper that runs beside ingest."""

from __future__ import annotations

import statistics
import threading
import time

from bench.server import http_client


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max in milliseconds (nearest rank on the sorted values).

    A round shorter than the scrape interval may hold no scrape at all: then every value is NaN,
    which the report prints as such rather than failing the run.
    """
    ordered = sorted(seconds)
    if not ordered:
        return dict.fromkeys(("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms"), float("nan"))

    def rank(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] * 1000

    return {"p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99),
            "max_ms": ordered[-1] * 1000, "mean_ms": statistics.fmean(ordered) * 1000}


def count_samples(exposition: str) -> int:
    return sum(1 for line in exposition.splitlines() if line and not line.startswith("#"))


def scrape_latencies(url: str, count: int) -> tuple[list[float], str]:
    """`count` sequential scrapes; their durations (request to last byte) and the last body."""
    durations: list[float] = []
    body = ""
    with http_client() as client:
        client.get(f"{url}/metrics").raise_for_status()  # warm the connection and label caches
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(f"{url}/metrics")
            body = response.text
            durations.append(time.perf_counter() - started)
            response.raise_for_status()
    return durations, body


class PeriodicScraper:
    """Scrapes /metrics every `interval` seconds in a thread, like a Prometheus server."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self.url = f"{url}/metrics"
        self.interval = interval
        self.durations: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.durations

    def _run(self) -> None:
        with http_client() as client:
            next_time = time.perf_counter()
            while not self._stop.is_set():
                started = time.perf_counter()
                client.get(self.url).raise_for_status()
                self.durations.append(time.perf_counter() - started)
                next_time += self.interval
                self._stop.wait(max(0.0, next_time - time.perf_counter()))
