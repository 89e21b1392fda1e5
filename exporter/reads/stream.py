"""The live stream: every accepted event, in ledger order, to each subscriber.

One hub reads the ledger after each applied group (`notify`, from the applier thread) and hands
the new events to every subscriber's buffer; the transports (SSE, WebSocket) drain the buffers.
A subscriber that asks to start from an earlier event catches up out of the ledger first: it is
registered before it reads, so the hub's events follow the ledger's without a gap or a repeat.
A subscriber whose buffer fills (it reads slower than events arrive) is cut off with the last
event it was given, instead of holding anything up; it resumes from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from exporter.events import TYPE_ALIASES

log = logging.getLogger(__name__)

FETCH_CHUNK: Final = 2_000
# Spellings of the fields a subscriber may filter on, as stored events may carry them.
FILTER_SPELLINGS: Final[dict[str, tuple[str, ...]]] = {
    "agent_id": ("agent_id", "agentId"),
    "task_id": ("task_id", "taskId"),
    "run_id": ("run_id", "runId", "executionId"),
}

Fetch = Callable[[int, int], Sequence[tuple[int, float, bytes]]]


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    payload: bytes
    fields: dict[str, Any]

    @classmethod
    def of(cls, seq: int, payload: bytes) -> StreamEvent:
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            fields = {}
        return cls(seq, payload, fields if isinstance(fields, dict) else {})


@dataclass(frozen=True, slots=True)
class StreamFilter:
    types: frozenset[str] = frozenset()
    agent_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None

    def admits(self, event: StreamEvent) -> bool:
        fields = event.fields
        if self.types and TYPE_ALIASES.get(str(fields.get("type")), "") not in self.types:
            return False
        for name in ("agent_id", "task_id", "run_id"):
            wanted = getattr(self, name)
            if wanted is not None and not any(fields.get(spelling) == wanted
                                               for spelling in FILTER_SPELLINGS[name]):
                return False
        return True


class TooManySubscribersError(RuntimeError):
    pass


@dataclass(eq=False, slots=True)
class Subscriber:
    """One connection's view: the events to send, and where it stands."""

    where: StreamFilter
    limit: int
    # Last event this subscriber has been handed (sent or skipped by its filter).
    position: int
    live_from: int  # the hub's position when it registered: catch-up ends there
    buffer: deque[StreamEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cut_off: bool = False
    closed: bool = False

    def offer(self, events: Sequence[StreamEvent]) -> None:
        if self.cut_off or self.closed:
            return
        if self.buffer and len(self.buffer) + len(events) > self.limit:
            self.cut_off = True  # slower than the fleet: resume from `position` later
        else:
            self.buffer.extend(events)
        self.wake.set()


class EventHub:
    """Owns the subscribers; `run` is its task in the server's event loop."""

    def __init__(self, fetch: Fetch, *, max_subscribers: int, buffer_events: int) -> None:
        self.fetch = fetch
        self.max_subscribers = max_subscribers
        self.buffer_events = buffer_events
        self.subscribers: set[Subscriber] = set()
        self.position = 0  # the last event the hub has handed out
        self.cut_offs = 0
        self.closing = False
        self._wanted = 0  # the last event the applier has applied
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, position: int) -> None:
        self.position = self._wanted = position
        self._loop = asyncio.get_running_loop()

    def notify(self, applied_seq: int) -> None:
        """From the applier's thread: events up to `applied_seq` may be handed out."""
        loop = self._loop
        if loop is not None and applied_seq > self._wanted:
            self._wanted = applied_seq
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.position < self._wanted:
                if not self.subscribers:  # nobody listens: skip ahead without reading
                    self.position = self._wanted
                    break
                try:
                    # Chunks no larger than a subscriber's buffer: one that keeps up always
                    # takes a whole chunk, one that does not is cut off at the next.
                    rows = await asyncio.to_thread(self.fetch, self.position,
                                                   min(FETCH_CHUNK, self.buffer_events))
                except Exception:
                    log.exception("the stream could not read the ledger; retrying")
                    await asyncio.sleep(1.0)
                    continue
                if not rows:
                    break
                events = [StreamEvent.of(seq, payload) for seq, _received, payload in rows]
                self.position = events[-1].seq
                for subscriber in list(self.subscribers):
                    subscriber.offer(events)

    def close(self) -> None:
        """End every subscriber's stream (the server is shutting down; clients resume)."""
        self.closing = True
        for subscriber in self.subscribers:
            subscriber.wake.set()

    def subscribe(self, where: StreamFilter, after: int | None) -> Subscriber:
        if self.closing:
            raise TooManySubscribersError("the exporter is shutting down")
        if len(self.subscribers) >= self.max_subscribers:
            raise TooManySubscribersError(
                f"{self.max_subscribers} subscribers are connected "
                "(EXPORTER_STREAM_MAX_SUBSCRIBERS)")
        start = self.position if after is None else min(after, self.position)
        subscriber = Subscriber(where, self.buffer_events, start, self.position)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber.closed:
            return
        subscriber.closed = True
        self.subscribers.discard(subscriber)
        if subscriber.cut_off:
            self.cut_offs += 1

    async def events(self, subscriber: Subscriber,
                     heartbeat: float) -> AsyncIterator[list[StreamEvent] | None]:
        """Batches of the subscriber's events in order; None when `heartbeat` seconds pass
        with nothing to send. Ends when it is cut off (its `position` says where to resume)."""
        while subscriber.position < subscriber.live_from and not self.closing:  # catch up
            rows = await asyncio.to_thread(self.fetch, subscriber.position,
                                           min(FETCH_CHUNK, subscriber.live_from
                                               - subscriber.position))
            if not rows:
                break
            batch = self._admitted(subscriber, [StreamEvent.of(seq, payload)
                                                for seq, _received, payload in rows])
            if batch:
                yield batch
        while True:
            if subscriber.buffer:  # even once cut off: the buffer is contiguous, send it first
                pending = [event for event in subscriber.buffer
                           if event.seq > subscriber.position]
                subscriber.buffer.clear()
                batch = self._admitted(subscriber, pending)
                if batch:
                    yield batch
                continue
            if subscriber.cut_off or self.closing:
                return
            subscriber.wake.clear()
            try:
                await asyncio.wait_for(subscriber.wake.wait(), heartbeat)
            except TimeoutError:
                yield None

    @staticmethod
    def _admitted(subscriber: Subscriber, events: list[StreamEvent]) -> list[StreamEvent]:
        if events:
            subscriber.position = events[-1].seq
        return [event for event in events if subscriber.where.admits(event)]
