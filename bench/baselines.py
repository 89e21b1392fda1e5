"""The yardsticks, measured in the same run as the exporter: what the simple way costs here.

- a naive raw store: Python sqlite3, 500 rows per transaction, WAL, `id TEXT PRIMARY KEY` and
  the event as a JSON text column;
- prometheus_client's `generate_latest` on a registry holding the same samples as /metrics;
- a bare `Counter.labels(...).inc()` on a private registry.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")


def naive_store_rate(rows: Sequence[tuple[str, str]], *, path: Path, batch_size: int,
                     synchronous: str) -> float:
    """Rows per second into a fresh file, one transaction per `batch_size` rows."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("CREATE TABLE events (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        started = time.perf_counter()
        for start in range(0, len(rows), batch_size):
            connection.execute("BEGIN")
            connection.executemany("INSERT OR IGNORE INTO events (id, payload) VALUES (?, ?)",
                                   rows[start:start + batch_size])
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return len(rows) / elapsed


def _unescape(value: str) -> str:
    return _UNESCAPE.sub(lambda match: "\n" if match.group(1) == "n" else match.group(1), value)


def mirror_registry(exposition: str) -> CollectorRegistry:
    """A registry with one Gauge child per sample of `exposition`: same names, labels, values.

    Gauges are prometheus_client's cheapest type to render (no `_created` samples, no bucket
    arithmetic), so this baseline is a lower bound on what prometheus_client would take.
    """
    registry = CollectorRegistry()
    gauges: dict[tuple[str, tuple[str, ...]], Gauge] = {}
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if line.startswith("#") or match is None:
            continue
        name, labels, value = match.groups()
        pairs = [(key, _unescape(raw)) for key, raw in _LABEL.findall(labels or "")]
        names = tuple(key for key, _ in pairs)
        gauge = gauges.get((name, names))
        if gauge is None:
            # A name seen with other label names gets a name of its own.
            unique = name if not any(key[0] == name for key in gauges) else f"{name}_{len(gauges)}"
            gauge = gauges[(name, names)] = Gauge(unique, "mirror", names, registry=registry)
        child = gauge.labels(*(value for _, value in pairs)) if names else gauge
        child.set(float(value))
    return registry


def generate_latest_durations(registry: CollectorRegistry, count: int) -> tuple[list[float], int]:
    """`count` renderings of `registry`; their durations and the number of samples rendered."""
    durations: list[float] = []
    body = b""
    for _ in range(count):
        started = time.perf_counter()
        body = generate_latest(registry)
        durations.append(time.perf_counter() - started)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return durations, samples


def counter_inc_seconds(label_values: Sequence[str], repeat: int = 5) -> float:
    """Seconds per `Counter.labels(value).inc()` over `label_values`: the median of `repeat`."""
    counter = Counter("bench_events", "Events.", ("type",), registry=CollectorRegistry())
    labels = counter.labels
    passes: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        for value in label_values:
            labels(value).inc()
        passes.append((time.perf_counter() - started) / len(label_values))
    return statistics.median(passes)
