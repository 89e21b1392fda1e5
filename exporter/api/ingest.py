"""Reading an ingest request: size limits, JSON / JSON array / NDJSON, validation.

Decoding and validating cost about two thirds of the CPU the server spends on an event, all of it
holding the GIL that the applier and the ledger writer also need. `BodyParser` does it for large
bodies in worker processes, each with a GIL of its own, and gets the events back as plain tuples
(unpickling those costs a fifth of validating); small bodies are parsed where they arrive.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import sys
from collections import deque
from typing import Final

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from exporter.api.errors import ApiError
from exporter.events import Event
from exporter.parsing import (
    FRAME_HEADER,
    MAX_PROBLEMS,
    NDJSON_TYPES,
    Limits,
    Parsed,
    RefusedBodyError,
    frame,
    parse_body,
)
from exporter.rows import PreparedRows

log = logging.getLogger(__name__)

# Smaller bodies are parsed in the server: the round trip to a worker would cost more.
DETACHED_PARSE_BYTES: Final = 16 * 1024
# Without workers, bodies above this are parsed in a thread so one cannot stall the event loop.
INLINE_PARSE_BYTES: Final = 512 * 1024
WORKER_STOP_SECONDS: Final = 10.0
__all__ = ["MAX_PROBLEMS", "NDJSON_TYPES", "BodyParser", "read_body"]


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


class WorkerGoneError(RuntimeError):
    """A parse worker exited; the bodies it had are parsed in the server instead."""


class _Worker:
    """One worker process and the bodies it was sent, answered in order over its stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: deque[asyncio.Future[Parsed]] = deque()
        self.closing = False
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def parse(self, body: bytes, content_type: str, limits: Limits,
                    received: float) -> Parsed:
        stdin = self.process.stdin
        if stdin is None or stdin.is_closing() or self.reader.done():
            raise WorkerGoneError("the parse worker is gone")
        answer: asyncio.Future[Parsed] = asyncio.get_running_loop().create_future()
        self.waiting.append(answer)
        try:
            stdin.write(frame((body, content_type, limits, received)))
            await stdin.drain()
        except ConnectionError:  # it died before the reader saw its stdout close
            answer.cancel()
            raise WorkerGoneError("the parse worker is gone") from None
        return await answer

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readexactly(FRAME_HEADER.size)
                parsed: Parsed = pickle.loads(await stdout.readexactly(
                    FRAME_HEADER.unpack(header)[0]))
                answer = self.waiting.popleft()
                if not answer.done():  # cancelled: its body never fully reached the worker
                    answer.set_result(parsed)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            if not self.closing:
                log.error("a parse worker exited; its bodies go to the others, or are parsed "
                          "in the server when none is left")
        finally:
            while self.waiting:
                answer = self.waiting.popleft()
                if not answer.done():
                    answer.set_exception(WorkerGoneError("the parse worker exited"))

    async def close(self) -> None:
        self.closing = True
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), WORKER_STOP_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self.reader


class BodyParser:
    """Parses ingest bodies: large ones in `workers` processes once started, others inline.

    The workers are child processes fed through their stdin and answering on their stdout,
    both read and written by the event loop itself: no thread of the server takes part, so a
    body costs no hand-over of the GIL on its way to a worker and back.
    """

    def __init__(self, *, workers: int, max_events: int, max_tokens: int) -> None:
        self.workers = workers
        self.limits: Limits = (max_events, max_tokens)
        self._pool: list[_Worker] = []
        self._next = 0

    async def start(self) -> None:
        """Start the workers; they import the parser while the server already answers (a
        body that arrives meanwhile waits in the pipe, about a second at most)."""
        for _ in range(self.workers - len(self._pool)):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "exporter.api.parse_worker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            self._pool.append(_Worker(process))

    async def close(self) -> None:
        pool, self._pool = self._pool, []
        for worker in pool:
            await worker.close()

    async def parse(self, body: bytes, content_type: str,
                    received: float) -> tuple[list[Event], PreparedRows | None]:
        """The events, and their ledger rows when a worker prepared them."""
        if self._pool and len(body) >= DETACHED_PARSE_BYTES:
            self._next = (self._next + 1) % len(self._pool)
            worker = self._pool[self._next]
            try:
                return _rebuilt(await worker.parse(body, content_type, self.limits, received))
            except WorkerGoneError:
                if worker in self._pool:
                    self._pool.remove(worker)
        try:
            if len(body) > INLINE_PARSE_BYTES:
                return await run_in_threadpool(parse_body, body, content_type, self.limits,
                                               received), None
            return parse_body(body, content_type, self.limits, received), None
        except RefusedBodyError as refusal:
            raise ApiError(refusal.status, refusal.code, refusal.message,
                           refusal.details) from None


def _rebuilt(parsed: Parsed) -> tuple[list[Event], PreparedRows]:
    rows, prepared, error = parsed
    if rows is None or prepared is None:
        assert error is not None
        raise ApiError(*error)
    return [Event(*row) for row in rows], prepared
