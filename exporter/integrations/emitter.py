"""What every in-process integration sends through: a sink of canonical events that never
raises into the agent it watches."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# `MonitorCallback.emit` (the exporter in the same process) or `ExporterClient.emit` (HTTP).
Sink = Callable[[Mapping[str, Any]], None]


class Emitter:
    """Sends canonical events, named by their receiver (`via`), to the sink; logs instead of
    raising."""

    def __init__(self, sink: Sink, source: str | None, via: str) -> None:
        self.sink = sink
        self.envelope: dict[str, Any] = {"via": via}
        if source is not None:
            self.envelope["source"] = source

    def __call__(self, event_type: str, **fields: Any) -> None:
        try:
            self.sink({**fields, **self.envelope, "type": event_type, "timestamp": time.time()})
        except Exception:  # the agent must never fail because of monitoring
            log.exception("could not send %s to the exporter", event_type)
