"""The in-process callback: an orchestrator in the same process hands events straight in."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from exporter.events import validate_raw
from exporter.pipeline import IngestPipeline

log = logging.getLogger(__name__)


class MonitorCallback:
    """`callback(name, payload)` for AgentMonitor; `emit(event)` for a whole event.

    Events are validated here and queued for the writer without waiting for the commit, so the
    orchestrator's thread never waits on the disk; `flush()` waits until all are durable. An
    invalid event is counted as rejected and logged, or raised when `strict`.
    """

    def __init__(self, pipeline: IngestPipeline, *, strict: bool = False) -> None:
        self.pipeline = pipeline
        self.strict = strict
        self.rejected = 0

    def __call__(self, name: str, payload: Mapping[str, Any]) -> None:
        self.emit({**payload, "type": name})

    def emit(self, event: Mapping[str, Any]) -> None:
        try:
            validated = validate_raw(dict(event), time.time())
        except ValueError as error:
            self.rejected += 1
            self.pipeline.telemetry.rejected.labels("invalid").inc()
            if self.strict:
                raise
            log.warning("orchestrator event refused: %s", error)
            return
        for canonical in validated:
            self.pipeline.offer(canonical)

    def flush(self, timeout: float | None = None) -> bool:
        return self.pipeline.flush(timeout)
