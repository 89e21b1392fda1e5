"""The in-process callback's cost per event, in an exporter embedded in the benchmark process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from exporter.callback import MonitorCallback
from exporter.service import build_exporter
from exporter.settings import Settings


def measure_callback(calls: list[tuple[str, dict[str, Any]]], *, directory: Path,
                     synchronous: str) -> dict[str, float]:
    """Seconds per event spent in `callback(name, payload)`, and until `flush()` made all durable.

    The ledger writer runs in its own thread meanwhile, as it does in an orchestrator, so the
    caller's time includes what sharing the GIL with it costs.
    """
    settings = Settings.model_validate({"database_url": f"sqlite:///{directory / 'callback.db'}",
                                        "sqlite_synchronous": synchronous})
    exporter = build_exporter(settings)
    exporter.start()
    try:
        callback = MonitorCallback(exporter.pipeline, strict=True)
        started = time.perf_counter()
        for name, payload in calls:
            callback(name, payload)
        called = time.perf_counter()
        if not callback.flush(timeout=600):
            raise RuntimeError("the callback's events were not committed within 600 s")
        flushed = time.perf_counter()
        stored = exporter.ledger.count_events()
    finally:
        exporter.close()
    if stored != len(calls):
        raise RuntimeError(f"{len(calls)} events offered, {stored} stored")
    return {"call_seconds": (called - started) / len(calls),
            "durable_seconds": (flushed - started) / len(calls)}
