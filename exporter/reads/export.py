"""Raw events out of the ledger, as stored (canonical JSON), a chunk at a time.

What `GET /api/v1/events/export` streams: every line is an event another exporter accepts as it
is (translated events carry their `via`), so export, ingest elsewhere, and the totals agree.
Memory stays flat whatever the range: one chunk of rows is held at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Engine, and_, select

from exporter.ledger import schema

EXPORT_CHUNK: Final = 5_000
EVENTS: Final = schema.events


@dataclass(frozen=True, slots=True)
class EventRange:
    after: int = 0  # seq
    before: int | None = None  # seq, exclusive
    since: float | None = None  # event time, inclusive
    until: float | None = None  # event time, exclusive
    types: tuple[str, ...] = ()
    source: str | None = None


def export_events(engine: Engine, where: EventRange) -> Iterator[Sequence[tuple[int, bytes]]]:
    """Chunks of (seq, payload) in ledger order."""
    after = where.after
    while True:
        terms = [EVENTS.c.seq > after]
        if where.before is not None:
            terms.append(EVENTS.c.seq < where.before)
        if where.since is not None:
            terms.append(EVENTS.c.ts >= where.since)
        if where.until is not None:
            terms.append(EVENTS.c.ts < where.until)
        if where.types:
            terms.append(EVENTS.c.type.in_(where.types))
        if where.source is not None:
            terms.append(EVENTS.c.source == where.source)
        query = select(EVENTS.c.seq, EVENTS.c.payload).where(and_(*terms)) \
            .order_by(EVENTS.c.seq).limit(EXPORT_CHUNK)
        with engine.connect() as connection:
            rows = [(row[0], bytes(row[1])) for row in connection.execute(query)]
        if rows:
            yield rows
        if len(rows) < EXPORT_CHUNK:
            return
        after = rows[-1][0]
