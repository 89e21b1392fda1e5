"""Validated events for tests that write to the ledger directly."""

from __future__ import annotations

import time

from exporter.events import Event, validate_batch


def log_events(ids: list[str]) -> list[Event]:
    """One `log.entry` per id, validated as ingest would."""
    raws = [{"type": "log.entry", "id": event_id, "level": "info", "message": event_id}
            for event_id in ids]
    events, problems = validate_batch(raws, time.time())
    assert problems == []
    return events
