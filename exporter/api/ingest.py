"""Reading an ingest request: size limits, JSON / JSON array / NDJSON, validation."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from exporter.api.errors import ApiError
from exporter.events import Event, validate_batch

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq")
MAX_PROBLEMS = 1_000


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body exceeds {limit} bytes")


def decode_events(body: bytes, content_type: str, max_events: int) -> list[Any]:
    """One event, a JSON array, or NDJSON, as a list of raw events."""
    if content_type.split(";")[0].strip().lower() in NDJSON_TYPES:
        raws = _decode_ndjson(body)
    else:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise ApiError(400, "malformed_json", "the body is not valid JSON (UTF-8)",
                           [{"field": "", "reason": str(error)}]) from None
        raws = document if isinstance(document, list) else [document]
    if len(raws) > max_events:
        raise ApiError(413, "too_many_events",
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
            raise ApiError(400, "malformed_json", f"line {number} is not valid JSON (UTF-8)",
                           [{"line": number, "field": "", "reason": str(error)}]) from None
    return raws


def validate_events(raws: list[Any], received: float) -> list[Event]:
    """Every event valid, or 422 listing each problem (index, field, reason)."""
    events, problems = validate_batch(raws, received)
    if problems:
        details = [problem.as_dict() for problem in problems[:MAX_PROBLEMS]]
        message = f"{len(problems)} of {len(raws)} events are invalid; nothing was stored"
        raise ApiError(422, "invalid_events", message, details)
    return events
