"""An event's ledger row, prepared where the event is validated (a parse worker, for HTTP
batches): light on imports, so that a parse worker loads the event contract and not the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from exporter.events import Event, agent_key, id_hash

EVENT_COLUMNS: Final = ("id_hash", "event_id", "source", "type", "ts", "received", "agent_key",
                        "payload")
# Events as the SQLite insert reads them: `sliced_rows` of `event_rows`.
PreparedRows = tuple[bytes, bytes]


def event_key(event: Event) -> int | None:
    return event.key if event.key is not None or event.id is None else id_hash(event.id)


def event_keys(events: Sequence[Event]) -> list[int | None]:
    keys = [event.key for event in events]
    if None in keys:  # no id, or an Event built without validation (its key not computed)
        return [event_key(event) for event in events]
    return keys


def event_row(event: Event, received: float) -> tuple[Any, ...]:
    """An event's values in `EVENT_COLUMNS` order."""
    agent_id = event.fields.get("agent_id")
    return (event_key(event), event.id, event.source, event.type, event.timestamp, received,
            None if agent_id is None else agent_key(event.source, agent_id), event.payload)


def event_rows(events: Iterable[Event], received: float) -> PreparedRows:
    """The events' rows for SQLite. Made where the events are validated (a parse worker, for
    HTTP batches): the writer, which holds the GIL that the applier and the event loop need,
    then only joins the rows of a group's batches."""
    return sliced_rows(event_row(event, received) for event in events)


def sliced_rows(rows: Iterable[tuple[Any, ...]]) -> tuple[bytes, bytes]:
    """Both parameters of a `sliced` statement, for rows whose last value is bytes: each row
    ends with that value's length instead, and the values follow each other in the second."""
    arrays: list[tuple[Any, ...]] = []
    blobs: list[bytes] = []
    for row in rows:
        blob = row[-1]
        arrays.append((*row[:-1], len(blob)))
        blobs.append(blob)
    return orjson.dumps(arrays), b"".join(blobs)
