"""Decoding and validating an ingest body: JSON, a JSON array or NDJSON, then the event contract.

No web framework here: a parse worker (`python -m exporter.api.parse_worker`) imports this, the
event contract and the ledger-row preparation, and nothing of the server (about 20 MiB instead
of 75). A body refused is a `RefusedBodyError` with the HTTP status and error code the API answers.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any, Final

import orjson

from exporter.events import Event, validate_batch
from exporter.rows import PreparedRows, event_rows

NDJSON_TYPES: Final = ("application/x-ndjson", "application/jsonl", "application/json-seq")
MAX_PROBLEMS: Final = 1_000
# A frame's header: the length of the pickle that follows.
FRAME_HEADER: Final = struct.Struct("!I")
# Events per request and tokens of one kind per usage event.
Limits = tuple[int, int]
# An event as it crosses from a worker: Event's fields in order.
EventRow = tuple[str, str | None, float, str, dict[str, Any], str, bytes, int | None]
# What a worker answers: the events and their ledger rows, or the refusal's status, code,
# message and details.
Parsed = (tuple[list[EventRow], PreparedRows, None]
          | tuple[None, None, tuple[int, str, str, list[Any]]])


class RefusedBodyError(Exception):
    """A body the API refuses: its status, error code, message and details."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def decode_events(body: bytes, content_type: str, max_events: int) -> list[Any]:
    """One event, a JSON array, or NDJSON, as a list of raw events."""
    if content_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        raws = _decode_ndjson(body)
    else:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise RefusedBodyError(400, "malformed_json", "the body is not valid JSON (UTF-8)",
                                   [{"field": "", "reason": str(error)}]) from None
        raws = document if isinstance(document, list) else [document]
    if len(raws) > max_events:
        raise RefusedBodyError(413, "too_many_events",
                               f"{len(raws)} events in one request; at most {max_events}")
    return raws


def _decode_ndjson(body: bytes) -> list[Any]:
    raws: list[Any] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            raws.append(orjson.loads(line))
        except orjson.JSONDecodeError as error:
            raise RefusedBodyError(
                400, "malformed_json", f"line {number} is not valid JSON (UTF-8)",
                [{"line": number, "field": "", "reason": str(error)}]) from None
    return raws


def validate_events(raws: list[Any], received: float, max_tokens: int) -> list[Event]:
    """Every event valid, or 422 listing each problem (index, field, reason)."""
    events, problems = validate_batch(raws, received, max_tokens=max_tokens)
    if problems:
        details = [problem.as_dict() for problem in problems[:MAX_PROBLEMS]]
        message = f"{len(problems)} of {len(raws)} events are invalid; nothing was stored"
        raise RefusedBodyError(422, "invalid_events", message, details)
    return events


def parse_body(body: bytes, content_type: str, limits: Limits, received: float) -> list[Event]:
    """Decode and validate a body, or raise the RefusedBodyError that refuses it."""
    max_events, max_tokens = limits
    return validate_events(decode_events(body, content_type, max_events), received, max_tokens)


def parse_detached(body: bytes, content_type: str, limits: Limits, received: float) -> Parsed:
    """`parse_body` in a worker: plain tuples both ways (cheaper to pickle than objects)."""
    try:
        events = parse_body(body, content_type, limits, received)
    except RefusedBodyError as error:
        return None, None, (error.status, error.code, error.message, error.details)
    return [(event.type, event.id, event.timestamp, event.source, event.fields, event.dialect,
             event.payload, event.key) for event in events], event_rows(events, received), None


def frame(message: object) -> bytes:
    """A message between the server and a worker: its pickle's length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data
