"""Reading an ingest request: size limits, JSON / JSON array / NDJSON, validation.

Decoding and validating cost about two thirds of the CPU the server spends on an event, all of it
holding the GIL that the applier and the ledger writer also need. `BodyParser` does it for large
bodies in worker processes, each with a GIL of its own, and gets the events back as plain tuples
(unpickling those costs a fifth of validating); small bodies are parsed where they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from exporter.api.errors import ApiError
from exporter.events import Event, validate_batch

log = logging.getLogger(__name__)

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq")
MAX_PROBLEMS = 1_000
# Smaller bodies are parsed in the server: the round trip to a worker would cost more.
DETACHED_PARSE_BYTES: Final = 16 * 1024
# Without workers, bodies above this are parsed in a thread so one cannot stall the event loop.
INLINE_PARSE_BYTES: Final = 512 * 1024
# An event as it crosses from a worker: Event's fields in order.
EventRow = tuple[str, str | None, float, str, dict[str, Any], bytes, int | None]
# What a worker answers: the events, or the ApiError's status, code, message and details.
Parsed = tuple[list[EventRow], None] | tuple[None, tuple[int, str, str, list[Any]]]


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


def parse_body(body: bytes, content_type: str, max_events: int, received: float) -> list[Event]:
    """Decode and validate a body, or raise the ApiError that refuses it."""
    return validate_events(decode_events(body, content_type, max_events), received)


def _parse_detached(body: bytes, content_type: str, max_events: int,
                    received: float) -> Parsed:
    """`parse_body` in a worker: plain tuples both ways (cheaper to pickle than objects)."""
    try:
        events = parse_body(body, content_type, max_events, received)
    except ApiError as error:
        return None, (error.status, error.code, error.message, error.details)
    return [(event.type, event.id, event.timestamp, event.source, event.fields, event.payload,
             event.key) for event in events], None


def _worker_started() -> None:
    # Ctrl-C reaches the whole process group; the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class BodyParser:
    """Parses ingest bodies: large ones in `workers` processes once started, others inline."""

    def __init__(self, *, workers: int, max_events: int) -> None:
        self.workers = workers
        self.max_events = max_events
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers; they import the parser while the server already answers (a
        body that arrives meanwhile waits for them, about a second at most)."""
        if self.workers <= 0 or self._pool is not None:
            return
        # spawn: forking a process that runs threads (writer, applier) is not safe.
        self._pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                         initializer=_worker_started)
        for _ in range(self.workers):
            self._pool.submit(_parse_detached, b"[]", "application/json", 1, 0.0)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def parse(self, body: bytes, content_type: str, received: float) -> list[Event]:
        pool = self._pool
        if pool is not None and len(body) >= DETACHED_PARSE_BYTES:
            try:
                parsed = await asyncio.get_running_loop().run_in_executor(
                    pool, _parse_detached, body, content_type, self.max_events, received)
            except BrokenProcessPool:
                log.error("a parse worker died; parsing in the server until restarted")
                self._pool = None
            else:
                return _rebuilt(parsed)
        if len(body) > INLINE_PARSE_BYTES:
            return await run_in_threadpool(parse_body, body, content_type, self.max_events,
                                           received)
        return parse_body(body, content_type, self.max_events, received)


def _rebuilt(parsed: Parsed) -> list[Event]:
    rows, error = parsed
    if rows is None:
        assert error is not None
        raise ApiError(*error)
    return [Event(*row) for row in rows]
