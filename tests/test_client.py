"""ExporterClient against a stand-in exporter on 127.0.0.1 that records every request.

`serve_stand_in` is also used by tests/test_demo.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.client import ClientClosedError, ExporterClient, InvalidEventError, QueueFullError
from exporter.events import validate_batch


@dataclass
class StandIn:
    """What the stand-in exporter answers and what it received."""

    url: str = ""
    # Statuses for the next requests, in order; 200 once exhausted.
    statuses: list[int] = field(default_factory=list)
    # Store the batch even when answering a failure (an answer lost after a durable commit).
    commit_before_failing: bool = False
    # Requests wait for this gate before they are answered.
    gate: threading.Event = field(default_factory=threading.Event)
    # Refuse a batch with 422 when the exporter's own validator finds a problem in it.
    validate: bool = False
    # Refuse a batch with 422 naming the events of these task ids (a rule of the server's alone).
    refuse_tasks: set[str] = field(default_factory=set)
    bodies: list[list[dict[str, object]]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    answers: list[dict[str, int]] = field(default_factory=list)
    stored_ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self, events: list[dict[str, object]]) -> dict[str, int]:
        ids = [str(event["id"]) for event in events]
        fresh = [event_id for event_id in ids if event_id not in self.stored_ids]
        self.stored_ids.update(ids)
        return {"accepted": len(fresh), "duplicates": len(ids) - len(fresh)}


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stand_in.gate.wait(10)
            with stand_in.lock:
                stand_in.bodies.append(body)
                stand_in.headers.append(dict(self.headers))
                stand_in.times.append(time.monotonic())
                status = stand_in.statuses.pop(0) if stand_in.statuses else 200
                problems = [problem.as_dict() for problem in validate_batch(
                    body, time.time())[1]] if stand_in.validate else []
                problems += [{"index": index, "field": "task_id", "reason": "refused here"}
                             for index, event in enumerate(body)
                             if event.get("task_id") in stand_in.refuse_tasks]
                if status == 200 and problems:
                    status = 422
                answer: dict[str, object] = {}
                if status == 200 or stand_in.commit_before_failing:
                    answer = stand_in.store(body)
                if status == 200:
                    stand_in.answers.append(answer)
            refusal = {"code": "invalid_events", "details": problems}
            payload = json.dumps(answer if status == 200 else refusal if problems
                                 else {"code": "error"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve_stand_in(*, validate: bool = False) -> Iterator[StandIn]:
    """A stand-in exporter on a free loopback port, for the duration of the block."""
    state = StandIn(validate=validate)
    state.gate.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with serve_stand_in() as state:
        yield state


def _events(count: int, start: int = 0) -> list[dict[str, object]]:
    return [{"type": "task.submitted", "task_id": f"t-{n}"} for n in range(start, start + count)]


def _ids(bodies: list[list[dict[str, object]]]) -> list[str]:
    return [str(event["id"]) for body in bodies for event in body]


def test_events_are_sent_in_batches_of_batch_size_in_order(stand_in: StandIn) -> None:
    with ExporterClient(stand_in.url, "secret", batch_size=500, flush_interval=5) as client:
        for event in _events(1200):
            client.emit(event)
        assert client.flush(timeout=5)
        assert client.sent == 1200
    assert [len(body) for body in stand_in.bodies] == [500, 500, 200]
    task_ids = [event["task_id"] for body in stand_in.bodies for event in body]
    assert task_ids == [f"t-{n}" for n in range(1200)]
    ids = _ids(stand_in.bodies)
    assert len(set(ids)) == 1200
    prefix = ids[0].rsplit("-", 1)[0]
    assert ids == [f"{prefix}-{n}" for n in range(1200)]
    assert all(h["Authorization"] == "Bearer secret" for h in stand_in.headers)


def test_a_partial_batch_leaves_after_flush_interval(stand_in: StandIn) -> None:
    with ExporterClient(stand_in.url, None, flush_interval=0.05) as client:
        for event in _events(3):
            client.emit(event)
        deadline = time.monotonic() + 3
        while not stand_in.bodies and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [len(body) for body in stand_in.bodies] == [3]
        assert "Authorization" not in stand_in.headers[0]


def test_503_is_retried_with_the_same_ids(stand_in: StandIn) -> None:
    stand_in.statuses = [503, 503]
    with ExporterClient(stand_in.url, "t", flush_interval=0, max_retry_delay=0.05) as client:
        for event in _events(10):
            client.emit(event)
        assert client.flush(timeout=5)
        assert (client.sent, client.retries, client.dropped) == (10, 2, 0)
    assert len(stand_in.bodies) == 3
    assert stand_in.bodies[0] == stand_in.bodies[1] == stand_in.bodies[2]


def test_a_retry_after_a_lost_answer_is_acknowledged_as_duplicates(stand_in: StandIn) -> None:
    stand_in.statuses = [502]
    stand_in.commit_before_failing = True  # stored, but the client never learns it
    with ExporterClient(stand_in.url, "t", flush_interval=0, max_retry_delay=0.05) as client:
        for event in _events(10):
            client.emit(event)
        assert client.flush(timeout=5)
    assert len(stand_in.stored_ids) == 10
    assert stand_in.answers == [{"accepted": 0, "duplicates": 10}]


def test_429_and_connection_errors_are_retried_and_backoff_is_capped(stand_in: StandIn) -> None:
    stand_in.statuses = [429, 500, 503, 504, 503, 503]
    with ExporterClient(stand_in.url, "t", flush_interval=0, max_retry_delay=0.05) as client:
        client.emit({"type": "task.started", "task_id": "t-1"})
        assert client.flush(timeout=5)
        assert client.retries == 6
    gaps = [b - a for a, b in zip(stand_in.times, stand_in.times[1:], strict=False)]
    assert max(gaps) < 0.05 + 0.2  # the cap, plus scheduling slack


def test_a_422_that_names_no_event_drops_the_batch_without_retrying(stand_in: StandIn) -> None:
    stand_in.statuses = [422]
    with ExporterClient(stand_in.url, "t", flush_interval=0, max_retry_delay=0.05) as client:
        for event in _events(5):
            client.emit(event)
        assert client.flush(timeout=5) is False
        assert (client.sent, client.dropped, client.retries) == (0, 5, 0)
        assert len(stand_in.bodies) == 1
        # A later flush reports on what was pending at its call only.
        client.emit({"type": "task.started", "task_id": "t-9"})
        assert client.flush(timeout=5) is True
        assert (client.sent, client.dropped) == (1, 5)


def test_emit_blocks_then_raises_queue_full_while_the_exporter_hangs(stand_in: StandIn) -> None:
    stand_in.gate.clear()  # the first request hangs until released
    client = ExporterClient(
        stand_in.url, "t", batch_size=2, flush_interval=0, max_queue=3, timeout=0.3
    )
    queued = 0
    started = time.monotonic()
    with pytest.raises(QueueFullError, match="max_queue=3"):
        for event in _events(100):
            client.emit(event)
            queued += 1
            started = time.monotonic()
    assert time.monotonic() - started >= 0.3
    assert 3 <= queued <= 3 + 2  # the queue plus at most one batch in flight
    stand_in.gate.set()
    assert client.close(timeout=5)
    assert client.sent == queued
    assert len(stand_in.stored_ids) == queued


def test_close_flushes_stops_the_thread_and_refuses_new_events(stand_in: StandIn) -> None:
    client = ExporterClient(stand_in.url, "t", flush_interval=10)
    for event in _events(7):
        client.emit(event)
    assert client.close() is True
    assert len(stand_in.stored_ids) == 7
    assert not client._thread.is_alive()
    with pytest.raises(ClientClosedError):
        client.emit({"type": "task.started", "task_id": "t-1"})
    assert client.close() is True  # idempotent


def test_close_gives_up_after_timeout_when_the_exporter_is_down() -> None:
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ExporterClient(f"http://127.0.0.1:{port}", "t", flush_interval=0,
                            max_retry_delay=0.05)
    for event in _events(4):
        client.emit(event)
    started = time.monotonic()
    assert client.close(timeout=0.3) is False
    assert time.monotonic() - started < 3
    assert client.retries >= 1
    assert (client.sent, client.dropped, client.pending) == (0, 4, 0)


def test_callback_style_and_own_ids(stand_in: StandIn) -> None:
    with ExporterClient(stand_in.url, "t", flush_interval=0) as client:
        payload: dict[str, object] = {"agentId": "a-1", "role": "BUILDER", "type": "ignored"}
        client("agent_created", payload)
        client.emit({"type": "agent.deleted", "agent_id": "a-1", "id": "mine-1"})
        assert client.flush(timeout=5)
    first, second = _ids(stand_in.bodies)[:2]
    events = [event for body in stand_in.bodies for event in body]
    assert events[0] == {"agentId": "a-1", "role": "BUILDER", "type": "agent_created", "id": first}
    assert "id" not in payload  # the caller's mapping is not modified
    assert second == "mine-1"


def test_emit_refuses_what_json_cannot_carry(stand_in: StandIn) -> None:
    with ExporterClient(stand_in.url, "t") as client, pytest.raises(TypeError):
        client.emit({"type": "metrics.update", "metrics": {"x": object()}})


def _usage(agent_id: str, index: int, input_tokens: int) -> dict[str, object]:
    return {"type": "agent.usage", "id": f"{agent_id}-{index}", "agent_id": agent_id,
            "model": "claude-sonnet-4-5-20250929", "input_tokens": input_tokens,
            "output_tokens": 10}


def test_emit_raises_for_an_invalid_event_and_the_nine_good_ones_land(exporter_factory) -> None:
    exporter = exporter_factory()
    with ExporterClient(exporter.url, exporter.token, flush_interval=0.05) as client:
        for index in range(9):
            client.emit(_usage("a-1", index, 100))
        with pytest.raises(InvalidEventError, match="input_tokens: must be between 0 and"):
            client.emit(_usage("a-1", 9, -5))
        assert client.flush(timeout=10) is True
        assert (client.sent, client.dropped) == (9, 0)
    assert exporter.sample("orchestrator_exporter_events_accepted_total",
                           type="agent.usage") == 9
    assert sum(value for (name, labels), value in exporter.metrics().items()
               if name == "orchestrator_tokens_total" and ("type", "input") in labels) == 900


def test_a_refusal_only_the_server_knows_drops_exactly_the_named_events(exporter_factory) -> None:
    # A limit set on the server alone: the client's contract check cannot foresee it.
    exporter = exporter_factory(env={"EXPORTER_MAX_EVENT_TOKENS": "1000"})
    events = [_usage("a-2", index, 5000 if index in (3, 7) else 100) for index in range(10)]
    for attempt in range(2):  # the second time: a resend of everything, with the same ids
        with ExporterClient(exporter.url, exporter.token, batch_size=10,
                            flush_interval=0.05) as client:
            for event in events:
                client.emit(event)
            assert client.flush(timeout=10) is False  # some were dropped
            assert (client.sent, client.dropped) == (8, 2), attempt
        samples = exporter.metrics()
        assert sum(value for (name, labels), value in samples.items()
                   if name == "orchestrator_tokens_total" and ("type", "input") in labels) == 800
        assert exporter.sample("orchestrator_exporter_events_accepted_total",
                               type="agent.usage") == 8


def test_a_422_naming_events_resends_the_rest_at_once_with_their_ids(stand_in: StandIn) -> None:
    stand_in.refuse_tasks = {"t-1", "t-4"}
    with ExporterClient(stand_in.url, "t", batch_size=6, flush_interval=0,
                        max_retry_delay=0.05) as client:
        for event in _events(6):
            client.emit(event)
        assert client.flush(timeout=5) is False
        assert (client.sent, client.dropped, client.retries) == (4, 2, 0)
    first, second = stand_in.bodies
    assert [event["task_id"] for event in second] == ["t-0", "t-2", "t-3", "t-5"]
    assert _ids([second]) == [_ids([first])[index] for index in (0, 2, 3, 5)]

