"""HTTP client for an orchestrator in another process: batched, retried, never double-counted.

    with ExporterClient("http://127.0.0.1:8088", token) as client:
        monitor.register_callback(client)          # AgentMonitor: client("agent_created", {...})
        client.emit({"type": "task.submitted", "task_id": "t-1"})

`emit` checks the event against the contract (the server's own validation) and only queues: a
background thread sends batches to `POST /api/v1/events`. Every event gets an id (`{client
uuid}-{sequence}`) when it has none, so a batch retried after a lost answer is acknowledged by
the exporter as duplicates instead of being counted twice. When the exporter still refuses a
batch naming some of its events (422), the rest is sent again at once: one bad event costs only
itself.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

import httpx
import orjson

from exporter.control.runner import CommandRunner, Handler
from exporter.events import check_raw

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/api/v1/events"
NEXT_COMMAND_PATH: Final = "/api/v1/commands/next"
# The exporter refuses requests above 10,000 events or 10 MiB; stay well under the byte limit.
MAX_BATCH_EVENTS: Final = 10_000
MAX_BATCH_BYTES: Final = 8 * 1024 * 1024
FIRST_RETRY_DELAY: Final = 0.1


class QueueFullError(RuntimeError):
    """emit() waited `timeout` seconds for room in the queue: the exporter is not keeping up."""


class ClientClosedError(RuntimeError):
    """emit() after close()."""


class InvalidEventError(ValueError):
    """emit() of an event the exporter would refuse; the message names the field and why."""


class _Batch:
    """Serialized events taken from the queue, sent and retried as one unit."""

    __slots__ = ("body", "count", "parts")

    def __init__(self, parts: list[bytes]) -> None:
        self._hold(parts)

    def _hold(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.count = len(parts)
        self.body = b"[" + b",".join(parts) + b"]"

    def drop(self, indexes: set[int]) -> None:
        """Leave out these positions, in place: on a failure the sender settles what remains."""
        self._hold([part for index, part in enumerate(self.parts) if index not in indexes])


class ExporterClient:
    """Send events to an orchestrator-exporter over HTTP from a background thread.

    Thread-safe. Memory is bounded by `max_queue` events waiting plus one batch in flight.
    Connection errors, 429 and 5xx answers are retried with exponential backoff and jitter, up
    to `max_retry_delay` seconds apart, with the same ids. A 422 that names events by index
    drops exactly those (logged with their reasons, counted in `dropped`) and sends the rest
    again at once, with the same ids; other 4xx answers drop the batch (it could never
    succeed), log why, and count its events in `dropped`.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_queue: int = 100_000,
        timeout: float = 10.0,
        max_retry_delay: float = 30.0,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_EVENTS}")
        if max_queue < 1 or flush_interval < 0 or timeout <= 0 or max_retry_delay <= 0:
            raise ValueError("max_queue, timeout and max_retry_delay must be positive")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.timeout = timeout
        self.max_retry_delay = max_retry_delay
        self._id_prefix = uuid.uuid4().hex
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, trust_env=False
        )
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._emitted = 0  # events ever queued; an event's position is its sequence number
        self._taken = 0  # events taken by the sender
        self._settled = 0  # events answered by the server or given up
        self._flush_target = 0  # send without waiting for a full batch until _taken reaches it
        self._closing = False
        self._stop = threading.Event()
        self._sent = 0
        self._dropped = 0
        self._retries = 0
        self._random = random.Random()
        self._ids = itertools.count()  # next() on a count is atomic under the GIL
        self._thread = threading.Thread(target=self._run, name="exporter-client", daemon=True)
        self._thread.start()

    @property
    def sent(self) -> int:
        """Events acknowledged by the exporter (accepted or duplicates)."""
        return self._sent

    @property
    def dropped(self) -> int:
        """Events given up: refused by the exporter (4xx), or still unsent when close() ended."""
        return self._dropped

    @property
    def retries(self) -> int:
        """Requests repeated after a connection error, 429 or 5xx."""
        return self._retries

    @property
    def pending(self) -> int:
        """Events emitted and not yet acknowledged or dropped."""
        return self._emitted - self._settled

    def emit(self, event: Mapping[str, object]) -> None:
        """Check one event against the contract, give it an id when it has none, and queue it.

        Raises InvalidEventError (naming the field) for an event the exporter would refuse; it
        is not queued. The event is serialized at once, so the caller may reuse the mapping.
        Blocks up to `timeout` seconds while the queue holds `max_queue` events, then raises
        QueueFullError. Raises TypeError when the event is not JSON-serializable.
        """
        if event.get("id") is None:
            event = {**event, "id": f"{self._id_prefix}-{next(self._ids)}"}
        event = event if isinstance(event, dict) else dict(event)
        try:
            check_raw(event, time.time())
        except ValueError as error:
            raise InvalidEventError(str(error)) from None
        body = orjson.dumps(event)
        with self._lock:
            if self._closing:
                raise ClientClosedError("the exporter client is closed")
            if len(self._queue) >= self.max_queue:
                self._wait_for_room()
            self._queue.append(body)
            self._emitted += 1
            if len(self._queue) == 1 or len(self._queue) >= self.batch_size:
                self._has_work.notify()

    def _wait_for_room(self) -> None:
        deadline = time.monotonic() + self.timeout
        while len(self._queue) >= self.max_queue:
            if self._closing:
                raise ClientClosedError("the exporter client was closed while emit() waited")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueueFullError(
                    f"{len(self._queue)} events are waiting for the exporter at "
                    f"{self._http.base_url} (max_queue={self.max_queue}); waited "
                    f"{self.timeout:g} s for room"
                )
            self._progress.wait(remaining)

    def __call__(self, name: str, payload: Mapping[str, object]) -> None:
        """AgentMonitor callback: `callback("agent_created", {...})` emits `{**payload, "type"}`."""
        self.emit({**payload, "type": name})

    def flush(self, timeout: float | None = None) -> bool:
        """Send now and wait until every event emitted so far is acknowledged.

        True when all of them were acknowledged (accepted or duplicates); False when `timeout`
        seconds passed first, or when some of them were dropped (see `dropped`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._emitted
            dropped_before = self._dropped
            self._flush_target = max(self._flush_target, target)
            self._has_work.notify()
            while self._settled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if not self._thread.is_alive():
                    return False
                self._progress.wait(remaining)
            return self._dropped == dropped_before

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to `timeout` seconds; None waits as long as it takes), then stop the thread.

        Events still unsent afterwards are counted in `dropped`. Returns what flush returned.
        Calling close() again does nothing and returns True.
        """
        with self._lock:
            if self._closing:
                return True
            self._closing = True  # refuse new events; the sender stops waiting for full batches
            self._has_work.notify()
            self._progress.notify_all()
        delivered = self.flush(timeout)
        self._stop.set()
        with self._lock:
            self._has_work.notify()
        self._thread.join()
        self._http.close()
        with self._lock:
            unsent = self._emitted - self._settled
            if unsent:
                logger.warning("exporter client closed with %d events unsent", unsent)
                self._dropped += unsent
                self._settled = self._emitted
                self._queue.clear()
        return delivered

    def serve_commands(self, handlers: Mapping[str, Handler], *, stop: threading.Event,
                       wait: float = 30.0, source: str = "default") -> None:
        """Take commands from the exporter and run them until `stop` is set (a long poll of
        `wait` seconds at a time): each with the handler of its kind, once per command id, its
        result reported back and retried until the exporter has it. Needs a token that may
        deliver (role `ingest`). `source` names this orchestrator instance, as its events do:
        it is given the commands whose target names that source. Returns early when the exporter
        refuses the token."""
        runner = CommandRunner(handlers)
        http = httpx.Client(base_url=self._http.base_url, headers=self._http.headers,
                            timeout=wait + self.timeout, trust_env=False)
        with http:
            while not stop.is_set():
                command = self._next_command(http, wait, source, stop)
                if command is None:
                    continue
                if isinstance(command, str):  # the token was refused: it never will be taken
                    return
                status, detail = runner.run(command)
                self._report(http, command["id"], status, detail, stop)

    def _next_command(self, http: httpx.Client, wait: float, source: str,
                      stop: threading.Event) -> dict[str, Any] | str | None:
        try:
            response = http.get(NEXT_COMMAND_PATH, params={"wait": wait, "source": source})
        except httpx.HTTPError as error:
            logger.warning("exporter unreachable for commands (%s)", error)
            stop.wait(min(self.max_retry_delay, 1.0))
            return None
        if response.status_code == 200:
            command: dict[str, Any] = response.json()
            return command
        if response.status_code in (401, 403):
            logger.error("exporter refused to hand out commands (%d): %s", response.status_code,
                         response.text[:500])
            return "refused"
        if response.status_code != 204:
            stop.wait(min(self.max_retry_delay, max(1.0, _retry_after(response))))
        return None

    def _report(self, http: httpx.Client, command_id: str, status: str, detail: Any,
                stop: threading.Event) -> None:
        body = orjson.dumps({"status": status, "detail": detail},
                            default=str)  # a handler's detail that JSON cannot carry: as text
        delay = FIRST_RETRY_DELAY
        while not stop.is_set():
            try:
                response = http.post(f"/api/v1/commands/{command_id}/result", content=body)
            except httpx.HTTPError as error:
                logger.warning("result of command %s not delivered (%s); retrying", command_id,
                               error)
            else:
                if response.status_code < 500 and response.status_code != 429:
                    if not response.is_success:
                        logger.error("exporter refused the result of command %s (%d): %s",
                                     command_id, response.status_code, response.text[:500])
                    return
            stop.wait(delay)
            delay = min(self.max_retry_delay, delay * 2)

    def __enter__(self) -> ExporterClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # The sender thread.

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._deliver(batch)
            except Exception:  # a bug must not kill the thread and leave flush() waiting
                logger.exception("exporter client failed to send %d events, dropped", batch.count)
                self._settle(batch.count, acknowledged=False)

    def _next_batch(self) -> _Batch | None:
        """Wait for a full batch, `flush_interval`, a flush or close; None once closing."""
        with self._lock:
            while not self._queue:
                if self._closing or self._stop.is_set():
                    return None
                self._has_work.wait()
            deadline = time.monotonic() + self.flush_interval
            while len(self._queue) < self.batch_size and not self._urgent():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._has_work.wait(remaining)
            if self._stop.is_set():
                return None
            parts: list[bytes] = []
            size = 2
            while self._queue and len(parts) < self.batch_size:
                part_size = len(self._queue[0]) + 1
                if parts and size + part_size > MAX_BATCH_BYTES:
                    break
                parts.append(self._queue.popleft())
                size += part_size
            self._taken += len(parts)
            self._progress.notify_all()  # room for blocked emitters
            return _Batch(parts)

    def _urgent(self) -> bool:
        return self._closing or self._taken < self._flush_target

    def _deliver(self, batch: _Batch) -> None:
        attempt = 0
        while True:
            retry_after = self._post(batch)
            if retry_after is None:
                return
            if retry_after < 0:  # the events the exporter did not name: again at once
                continue
            if self._stop.is_set():
                return  # close() gave up waiting; it counts the batch as dropped
            delay = min(self.max_retry_delay, FIRST_RETRY_DELAY * 2**attempt)
            delay = delay / 2 + self._random.uniform(0, delay / 2)  # jitter: 50% to 100%
            delay = min(self.max_retry_delay, max(delay, retry_after))
            attempt += 1
            with self._lock:
                self._retries += 1
            if self._stop.wait(delay):
                return

    def _post(self, batch: _Batch) -> float | None:
        """Send once; None when settled (acknowledged or dropped), -1 to send what is left of
        the batch at once (after a 422 that named some of it), else seconds to wait first."""
        try:
            response = self._http.post(EVENTS_PATH, content=batch.body)
        except httpx.HTTPError as error:
            logger.warning("exporter unreachable (%s); will retry %d events", error, batch.count)
            return 0.0
        status = response.status_code
        if status == 429 or status >= 500:
            logger.warning("exporter answered %d; will retry %d events", status, batch.count)
            return _retry_after(response)
        if status == 422:
            named = _named_problems(response, batch.count)
            if named:
                return self._drop_named(batch, named)
        if not response.is_success:
            logger.error(
                "exporter refused %d events with %d, dropped: %s",
                batch.count, status, response.text[:2000],
            )
        self._settle(batch.count, acknowledged=response.is_success)
        return None

    def _drop_named(self, batch: _Batch, named: dict[int, list[str]]) -> float | None:
        for index, reasons in sorted(named.items()):
            logger.error("exporter refused an event, dropped: %s; %s",
                         "; ".join(reasons), batch.parts[index][:500].decode(errors="replace"))
        self._settle(len(named), acknowledged=False)
        batch.drop(set(named))
        return -1.0 if batch.count else None

    def _settle(self, count: int, *, acknowledged: bool) -> None:
        with self._lock:
            if acknowledged:
                self._sent += count
            else:
                self._dropped += count
            self._settled += count
            self._progress.notify_all()


def _named_problems(response: httpx.Response, count: int) -> dict[int, list[str]]:
    """The batch positions a 422 names, with their reasons; empty when it names none."""
    try:
        details = response.json().get("details")
    except (ValueError, AttributeError):
        return {}
    named: dict[int, list[str]] = {}
    for detail in details if isinstance(details, list) else ():
        index = detail.get("index") if isinstance(detail, dict) else None
        if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count:
            named.setdefault(index, []).append(f"{detail.get('field')}: {detail.get('reason')}")
    return named


def _retry_after(response: httpx.Response) -> float:
    """Seconds from a Retry-After header given in seconds; 0 when absent or a date."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
