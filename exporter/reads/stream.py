"""The live stream: every accepted event, in ledger order, to each subscriber.

The applier hands the hub each batch it applied (`notify`, from its thread), and the hub hands
the new events to every subscriber's buffer; the transports (SSE, WebSocket) drain the buffers.
Events the applier could not hand over (their seqs unknown, or too many waiting) are read from
the ledger instead.
A subscriber that asks to start from an earlier event catches up out of the ledger first: it is
registered before it reads, so the hub's events follow the ledger's without a gap or a repeat.
A subscriber whose buffer fills (it reads slower than events arrive) is cut off with the last
event it was given, instead of holding anything up; it resumes from there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from exporter.events import TYPE_ALIASES

log = logging.getLogger(__name__)

FETCH_CHUNK: Final = 2_000
FAN_OUT_SECONDS: Final = 0.01
# Events handed over by the applier and not yet fanned out; past this, the ledger has them.
PENDING_EVENTS: Final = 20_000
# Spellings of the fields a subscriber may filter on, as stored events may carry them.
FILTER_SPELLINGS: Final[dict[str, tuple[str, ...]]] = {
    "agent_id": ("agent_id", "agentId"),
    "task_id": ("task_id", "taskId"),
    "run_id": ("run_id", "runId", "executionId"),
}

Fetch = Callable[[int, int], Sequence[tuple[int, float, bytes]]]


class Stored(Protocol):
    """An applied event: its bytes as the ledger stores them."""

    payload: bytes


class StreamEvent:
    """One stored event; its fields are parsed only when a subscriber's filter asks."""

    __slots__ = ("_fields", "payload", "seq")

    def __init__(self, seq: int, payload: bytes) -> None:
        self.seq = seq
        self.payload = payload
        self._fields: dict[str, Any] | None = None

    @property
    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            try:
                fields = orjson.loads(self.payload)
            except orjson.JSONDecodeError:
                fields = {}
            self._fields = fields if isinstance(fields, dict) else {}
        return self._fields


class Chunk:
    """Consecutive events handed out together. Encoded once for every subscriber that sends it
    whole: with 100 subscribers, building each one's frames was most of the event loop's work
    (docs/benchmarks.md)."""

    __slots__ = ("_messages", "_sse", "events")

    def __init__(self, events: list[StreamEvent]) -> None:
        self.events = events
        self._sse: bytes | None = None
        self._messages: list[str] | None = None

    @classmethod
    def of(cls, rows: Sequence[tuple[int, float, bytes]]) -> Chunk:
        return cls([StreamEvent(seq, payload) for seq, _received, payload in rows])

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq

    def after(self, seq: int) -> Chunk:
        """This chunk without the events up to `seq` (itself when none are)."""
        if not self.events or self.events[0].seq > seq:
            return self
        return Chunk([event for event in self.events if event.seq > seq])

    def admitted(self, where: StreamFilter) -> Chunk:
        if where.everything:
            return self
        return Chunk([event for event in self.events if where.admits(event)])

    def sse(self) -> bytes:
        """Server-Sent Events frames: `id:` the seq, `data:` the event as stored."""
        if self._sse is None:
            self._sse = b"".join(b"id: %d\ndata: %s\n\n" % (event.seq, event.payload)
                                 for event in self.events)
        return self._sse

    def messages(self) -> list[str]:
        """WebSocket messages, one per event."""
        if self._messages is None:
            self._messages = [(b'{"seq":%d,"event":%s}' % (event.seq, event.payload)).decode()
                              for event in self.events]
        return self._messages


@dataclass(frozen=True, slots=True)
class StreamFilter:
    types: frozenset[str] = frozenset()
    agent_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None

    @property
    def everything(self) -> bool:
        return not self.types and self.agent_id is None and self.task_id is None \
            and self.run_id is None

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
    buffer: deque[Chunk] = field(default_factory=deque)
    buffered: int = 0  # events in the buffer
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cut_off: bool = False
    closed: bool = False

    def offer(self, chunk: Chunk) -> None:
        if self.cut_off or self.closed:
            return
        if self.buffered and self.buffered + len(chunk.events) > self.limit:
            self.cut_off = True  # slower than the fleet: resume from `position` later
        else:
            self.buffer.append(chunk)
            self.buffered += len(chunk.events)
        self.wake.set()

    def take(self) -> list[Chunk]:
        """The buffered chunks, without what this subscriber was already handed."""
        chunks = [chunk.after(self.position) for chunk in self.buffer]
        self.buffer.clear()
        self.buffered = 0
        return [chunk for chunk in chunks if chunk.events]


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
        # Chunks the applier handed over, in seq order (not always contiguous: see `notify`).
        self._pending: deque[Chunk] = deque()
        self._pending_events = 0
        self._pending_lock = threading.Lock()

    def start(self, position: int) -> None:
        self.position = self._wanted = position
        self._loop = asyncio.get_running_loop()

    def notify(self, applied_seq: int, first_seq: int, events: Sequence[Stored] | None) -> None:
        """From the applier's thread: events up to `applied_seq` may be handed out; `events`,
        when given, are the new ones from `first_seq` on, so that they need no reading back."""
        loop = self._loop
        if loop is None or applied_seq <= self._wanted:
            return
        if events and self.subscribers:
            self._hand_over(first_seq, events)
        self._wanted = applied_seq
        if not self._wake.is_set():  # set and not yet cleared: the hub reads `_wanted` after
            loop.call_soon_threadsafe(self._wake.set)

    def _hand_over(self, first_seq: int, events: Sequence[Stored]) -> None:
        with self._pending_lock:
            if self._pending_events + len(events) > PENDING_EVENTS:
                return  # the hub is behind: it reads these from the ledger
            self._pending_events += len(events)
        # No larger than a subscriber's buffer, as the ledger's chunks (see `run`).
        size = self.buffer_events
        for start in range(0, len(events), size):
            self._pending.append(Chunk([StreamEvent(first_seq + start + offset, event.payload)
                                        for offset, event
                                        in enumerate(events[start:start + size])]))

    def _next_pending(self) -> Chunk | None:
        """The handed-over chunk that continues from `position`; None when there is a gap before
        the first one (or none is left): the ledger fills it."""
        while self._pending:
            rest = self._pending[0].after(self.position)
            if rest.events and rest.events[0].seq > self.position + 1:
                return None
            self._pop_pending()
            if rest.events:
                return rest
        return None

    def _pop_pending(self) -> None:
        chunk = self._pending.popleft()
        with self._pending_lock:
            self._pending_events -= len(chunk.events)

    async def _fetch(self) -> Chunk | None:
        # Chunks no larger than a subscriber's buffer: one that keeps up always takes a whole
        # chunk, one that does not is cut off at the next.
        rows = await asyncio.to_thread(self.fetch, self.position,
                                       min(FETCH_CHUNK, self.buffer_events))
        return Chunk.of(rows) if rows else None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        handed_out = 0.0
        while True:
            await self._wake.wait()
            # Events applied within FAN_OUT_SECONDS go out together: each hand-out costs every
            # subscriber a send, so fewer, larger ones leave the loop to the ingest it answers.
            await asyncio.sleep(max(0.0, handed_out + FAN_OUT_SECONDS - loop.time()))
            self._wake.clear()
            while self.position < self._wanted:
                if not self.subscribers:  # nobody listens: skip ahead without reading
                    self.position = self._wanted
                    self._drop_pending()
                    break
                try:
                    chunk = self._next_pending() or await self._fetch()
                except Exception:
                    log.exception("the stream could not read the ledger; retrying")
                    await asyncio.sleep(1.0)
                    continue
                if chunk is None:
                    break
                self.position = chunk.last_seq
                for subscriber in list(self.subscribers):
                    subscriber.offer(chunk)
            handed_out = loop.time()

    def _drop_pending(self) -> None:
        while self._pending:
            self._pop_pending()

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
                     heartbeat: float) -> AsyncIterator[list[Chunk] | None]:
        """The subscriber's events in order, as chunks to send together; None when `heartbeat`
        seconds pass with nothing to send. Ends when it is cut off (its `position` says where
        to resume)."""
        while subscriber.position < subscriber.live_from and not self.closing:  # catch up
            rows = await asyncio.to_thread(self.fetch, subscriber.position,
                                           min(FETCH_CHUNK, subscriber.live_from
                                               - subscriber.position))
            if not rows:
                break
            batch = self._admitted(subscriber, [Chunk.of(rows)])
            if batch:
                yield batch
        while True:
            if subscriber.buffer:  # even once cut off: the buffer is contiguous, send it first
                batch = self._admitted(subscriber, subscriber.take())
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
    def _admitted(subscriber: Subscriber, chunks: list[Chunk]) -> list[Chunk]:
        if chunks:
            subscriber.position = chunks[-1].last_seq
        admitted = [chunk.admitted(subscriber.where) for chunk in chunks]
        return [chunk for chunk in admitted if chunk.events]
