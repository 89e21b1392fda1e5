"""The live stream against a real exporter: every event in ledger order, resumed after
connections cut at random points with no gap and no repeat; a stalled subscriber is cut off
with its resume point; filters, heartbeats, the subscriber cap; the WebSocket twin."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from streams import mixed_stream
from support import ExporterFactory, ExporterProcess

UNLIMITED = {"EXPORTER_API_RATE_PER_SECOND": "100000", "EXPORTER_API_BURST": "1000000"}
DEADLINE = 120.0


def headers(exporter: ExporterProcess, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {exporter.token}", **extra}


def exported(exporter: ExporterProcess) -> list[bytes]:
    with httpx.Client(timeout=60) as client:
        answer = client.get(f"{exporter.url}/api/v1/events/export", headers=headers(exporter))
    return answer.content.splitlines()


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str, str]]:
    """(event name, id, data) per SSE event; comments come out as ("comment", "", text)."""
    name, ident, data = "message", "", ""
    for line in lines:
        if line.startswith(":"):
            yield "comment", "", line[1:].strip()
        elif line.startswith("id: "):
            ident = line[4:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line.startswith("event: "):
            name = line[7:]
        elif line == "" and (data or name != "message"):
            yield name, ident, data
            name, ident, data = "message", "", ""


def test_cut_connections_resume_with_no_gap_and_no_repeat(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env={**UNLIMITED, "EXPORTER_STREAM_HEARTBEAT_SECONDS": "0.5"})
    stream = mixed_stream(total=4_000, batch_size=100)
    done = threading.Event()

    def ingest() -> None:
        for batch in stream.batches:
            assert exporter.post_events(batch).status_code == 200
        done.set()

    rng = random.Random(7)
    writer = threading.Thread(target=ingest)
    writer.start()
    received: list[tuple[int, bytes]] = []
    last: str | None = None
    reconnects = 0
    deadline = time.monotonic() + DEADLINE
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            extra = {"Last-Event-ID": last} if last is not None else {}
            params = {} if last is not None else {"after": "0"}
            take = rng.randint(1, 400)
            with client.stream("GET", f"{exporter.url}/api/v1/stream", params=params,
                               headers=headers(exporter, **extra)) as answer:
                assert answer.status_code == 200
                for name, ident, data in sse_events(answer.iter_lines()):
                    if name == "message":
                        received.append((int(ident), data.encode()))
                        last = ident
                        take -= 1
                    if take == 0 or time.monotonic() > deadline or (
                            done.is_set() and len(received) >= stream.expected.unique_events):
                        break  # the connection is dropped here, mid-stream
            reconnects += 1
            if done.is_set() and len(received) >= stream.expected.unique_events:
                break
    writer.join()
    seqs = [seq for seq, _ in received]
    assert seqs == sorted(set(seqs)), "out of order or repeated"
    assert [payload for _, payload in received] == exported(exporter)
    assert reconnects > 5


def test_a_stalled_subscriber_is_cut_off_and_resumes(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env={**UNLIMITED, "EXPORTER_STREAM_BUFFER_EVENTS": "100"})
    big = "x" * 16_000  # enough bytes to fill the socket buffers of a reader that stops
    events = [{"id": f"log-{index}", "type": "log.entry", "level": "info",
               "message": f"{index} {big}"} for index in range(3_000)]
    with httpx.Client(timeout=60) as client:
        with client.stream("GET", f"{exporter.url}/api/v1/stream", params={"after": "0"},
                           headers=headers(exporter)) as answer:
            lines = answer.iter_lines()
            assert next(lines).startswith(": connected")
            started = time.monotonic()
            for start in range(0, len(events), 100):  # while the subscriber reads nothing
                assert exporter.post_events(events[start:start + 100]).status_code == 200
            assert time.monotonic() - started < DEADLINE
            got: list[int] = []
            cutoff: dict[str, Any] | None = None
            for name, ident, data in sse_events(lines):
                if name == "cutoff":
                    cutoff = orjson.loads(data)
                    break
                if name == "message":
                    got.append(int(ident))
        assert cutoff is not None, "never cut off"
        assert cutoff["resume_after"] == got[-1] < 3_000
        with client.stream("GET", f"{exporter.url}/api/v1/stream",
                           params={"after": str(cutoff["resume_after"])},
                           headers=headers(exporter)) as answer:
            for name, ident, _data in sse_events(answer.iter_lines()):
                if name == "message":
                    got.append(int(ident))
                    if len(got) == len(events):
                        break
    assert got == list(range(1, len(events) + 1))


def test_filters_heartbeats_and_the_subscriber_cap(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env={**UNLIMITED, "EXPORTER_STREAM_HEARTBEAT_SECONDS": "0.2",
                                     "EXPORTER_STREAM_MAX_SUBSCRIBERS": "1"})
    stream = mixed_stream(total=1_000, batch_size=250)
    for batch in stream.batches:
        assert exporter.post_events(batch).status_code == 200
    url = f"{exporter.url}/api/v1/stream"
    with httpx.Client(timeout=30) as client:
        with client.stream("GET", url, params={"after": "0", "types": "log.entry,task.failed"},
                           headers=headers(exporter)) as answer:
            assert client.get(url, headers=headers(exporter)).status_code == 503  # the cap
            types: list[str] = []
            for name, _ident, data in sse_events(answer.iter_lines()):
                if name == "comment" and data == "heartbeat":
                    break  # caught up, then quiet: a heartbeat
                if name == "message":
                    types.append(orjson.loads(data)["type"])
        wanted = sum(stream.expected.logs_by_level.values()) + stream.expected.tasks_by_status[
            "failed"]
        assert len(types) == wanted
        assert set(types) <= {"log.entry", "log_entry", "task.failed", "task_failed"}
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_websocket_sends_each_event_with_its_seq(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env=UNLIMITED)
    stream = mixed_stream(total=1_500, batch_size=250)
    first, rest = stream.batches[:2], stream.batches[2:]
    for batch in first:
        assert exporter.post_events(batch).status_code == 200
    ws_url = exporter.url.replace("http://", "ws://") + "/api/v1/ws?after=0"

    async def receive_all() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        async with websockets.connect(ws_url, additional_headers=headers(exporter)) as socket:
            for batch in rest:  # live events after the backlog
                await asyncio.to_thread(exporter.post_events, batch)
            while len(messages) < stream.expected.unique_events:
                message = orjson.loads(await asyncio.wait_for(socket.recv(), 30))
                if "seq" in message and "event" in message:
                    messages.append(message)
        return messages

    messages = asyncio.run(receive_all())
    assert [message["seq"] for message in messages] == list(
        range(1, stream.expected.unique_events + 1))
    assert [orjson.dumps(message["event"]) for message in messages] == [
        orjson.dumps(orjson.loads(line)) for line in exported(exporter)]

    async def refused() -> int:
        try:
            async with websockets.connect(ws_url) as socket:
                await socket.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else 0
        return 0

    assert asyncio.run(refused()) == 1008


@pytest.mark.parametrize("resume", ["after", "header"])
def test_resume_from_the_middle(exporter_factory: ExporterFactory, resume: str):
    exporter = exporter_factory(env=UNLIMITED)
    for batch in mixed_stream(total=600, batch_size=200).batches:
        assert exporter.post_events(batch).status_code == 200
    extra = {"Last-Event-ID": "250"} if resume == "header" else {}
    params = {"after": "250"} if resume == "after" else {}
    with httpx.Client(timeout=30) as client, client.stream(
            "GET", f"{exporter.url}/api/v1/stream", params=params,
            headers=headers(exporter, **extra)) as answer:
        seqs = []
        for name, ident, _data in sse_events(answer.iter_lines()):
            if name == "message":
                seqs.append(int(ident))
                if len(seqs) == 350:
                    break
    assert seqs == list(range(251, 601))
