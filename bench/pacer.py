"""Paced ingest: a separate process posting pre-built batches at a fixed rate, on a schedule.

The load generator (bench/loadgen.py) sends as fast as it is answered, to find the maximum; this
one holds a rate (in `bench.reads`, half that maximum) while reads and the live stream are
measured. Batch k of a segment is due k batch sizes' worth of the rate after `go`; several
connections send, so a slow answer does not hold up the next batch. Bodies are built and
serialised before any clock starts (`build`), in this process so that building competes with
nothing measured for a GIL. The parent drives it over pipes, one line each way:

    build N     build N more events' bodies               -> ready
    go          start a segment                           (no answer)
    stop        end it once the batches in flight return  -> the segment as one JSON line
    acks FILE   write when each batch of the last segment was answered, with its event ids
    quit

    python -m bench.pacer --url URL --token T --rate 25000 --seed 7
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.child import LineChild
from bench.scrape import percentiles
from bench.server import http_client
from bench.workload import serialised_batches

# The id of each event in a body: the workload's events hold no other key named "id".
_EVENT_ID = re.compile(rb'"id":"([^"]+)"')


@dataclass(slots=True)
class _Segment:
    started: float = 0.0
    sent: list[tuple[int, float, float]] = field(default_factory=list)  # (body, sent, answered)
    events: int = 0
    failures: int = 0
    first_failure: str = ""
    most_late: float = 0.0  # the furthest a batch was sent behind its due time
    exhausted: bool = False


class Pacer:
    """Threads, each with its own keep-alive connection, sending the next body when it is due."""

    def __init__(self, url: str, token: str, *, rate: float, batch_size: int,
                 connections: int, seed: int) -> None:
        self.url = f"{url}/api/v1/events"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.interval = batch_size / rate
        self.batch_size = batch_size
        self.seed = seed
        self.bodies: list[tuple[int, bytes]] = []
        self.next_body = 0
        self.segment = _Segment()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.clients = [http_client() for _ in range(connections)]
        for client in self.clients:  # open the connections before any clock starts
            client.get(f"{url}/health").raise_for_status()
        self._threads: list[threading.Thread] = []
        self._due_index = 0

    def build(self, events: int) -> None:
        self.seed += 1
        self.bodies.extend(serialised_batches(events, self.batch_size, seed=self.seed))

    def go(self) -> None:
        self.segment = _Segment(started=time.monotonic())
        self._due_index = 0
        self.stopping.clear()
        self._threads = [threading.Thread(target=self._work, args=(client,))
                         for client in self.clients]
        for thread in self._threads:
            thread.start()

    def stop(self) -> dict[str, Any]:
        self.stopping.set()
        for thread in self._threads:
            thread.join()
        segment = self.segment
        seconds = time.monotonic() - segment.started
        latencies = [answered - sent for _, sent, answered in segment.sent]
        return {"events": segment.events, "requests": len(segment.sent), "seconds": seconds,
                "events_per_second": self._held_rate(),
                "rate": self.batch_size / self.interval, "most_late_ms": segment.most_late * 1e3,
                "exhausted": segment.exhausted, "failures": segment.failures,
                "first_failure": segment.first_failure,
                **{f"request_{key}": value for key, value in percentiles(latencies).items()}}

    def _held_rate(self) -> float:
        """Events per second from the first batch sent to the last: n batches over n - 1
        intervals (over the whole segment, a short one would count its first batch as time)."""
        sent = sorted(sent for _, sent, _ in self.segment.sent)
        if len(sent) < 2 or sent[-1] <= sent[0]:
            return 0.0
        return (len(sent) - 1) * self.batch_size / (sent[-1] - sent[0])

    def acks(self) -> list[tuple[float, list[str]]]:
        """(monotonic time of the 200 answer, the batch's event ids) per batch of the segment."""
        return [(answered, [match.decode() for match in _EVENT_ID.findall(self.bodies[index][1])])
                for index, _, answered in self.segment.sent]

    def _take(self) -> tuple[int | None, float]:
        """The next body (None when every one is taken) and when it is due."""
        with self.lock:
            due = self.segment.started + self._due_index * self.interval
            self._due_index += 1
            if self.next_body >= len(self.bodies):
                return None, due
            self.next_body += 1
            return self.next_body - 1, due

    def _work(self, client: httpx.Client) -> None:
        while not self.stopping.is_set():
            index, due = self._take()
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                return  # stopped while waiting: this body is never sent
            if index is None:
                self.segment.exhausted = True  # a batch was due and there was none
                return
            self._send(client, index, due)

    def _send(self, client: httpx.Client, index: int, due: float) -> None:
        size, body = self.bodies[index]
        sent = time.monotonic()
        try:
            response = client.post(self.url, content=body, headers=self.headers)
        except httpx.HTTPError as error:
            self._fail(f"{type(error).__name__}: {error}")
            return
        answered = time.monotonic()
        if response.status_code != 200 or response.json()["accepted"] != size:
            self._fail(f"{response.status_code}: {response.text[:300]}")
            return
        with self.lock:
            self.segment.sent.append((index, sent, answered))
            self.segment.events += size
            self.segment.most_late = max(self.segment.most_late, sent - due)

    def _fail(self, message: str) -> None:
        with self.lock:
            self.segment.failures += 1
            self.segment.first_failure = self.segment.first_failure or message

    def close(self) -> None:
        for client in self.clients:
            client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pacer")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, required=True, help="events per second")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seed", type=int, required=True)
    arguments = parser.parse_args(argv)
    pacer = Pacer(arguments.url, arguments.token, rate=arguments.rate,
                  batch_size=arguments.batch_size, connections=arguments.connections,
                  seed=arguments.seed)
    try:
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "build":
                pacer.build(int(argument))
                print("ready", flush=True)
            elif command == "go":
                pacer.go()
            elif command == "stop":
                print(orjson.dumps(pacer.stop()).decode(), flush=True)
            elif command == "acks":
                Path(argument).write_bytes(orjson.dumps(pacer.acks()))
                print("written", flush=True)
            elif command == "quit":
                return 0
    finally:
        pacer.close()
    return 0


class PacedIngest:
    """The parent's handle on one pacer process."""

    def __init__(self, *, url: str, token: str, rate: float, batch_size: int, connections: int,
                 seed: int) -> None:
        self.rate = rate
        self._child = LineChild("bench.pacer", [
            "--url", url, f"--token={token}", "--rate", str(rate), "--batch-size",
            str(batch_size), "--connections", str(connections), "--seed", str(seed)])

    @property
    def pid(self) -> int:
        return self._child.pid

    def build(self, seconds: float) -> None:
        """Enough bodies for `seconds` more of paced ingest; returns when they are built."""
        if self._child.ask(f"build {max(1, round(self.rate * seconds))}") != "ready":
            raise RuntimeError("the pacer failed to build its batches")

    def go(self) -> None:
        self._child.say("go")

    def stop(self) -> dict[str, Any]:
        """The segment's account. A batch refused or unanswered (60 s) is counted in
        `failures`, not raised: an exporter that stops answering ingest is a result."""
        result = self._child.ask_json("stop")
        if result["exhausted"]:
            raise RuntimeError("the pacer ran out of batches; build more before the segment")
        return result

    def acks(self, path: Path) -> list[tuple[float, list[str]]]:
        self._child.ask(f"acks {path}")
        return [(float(answered), list(ids)) for answered, ids in orjson.loads(path.read_bytes())]

    def close(self) -> None:
        self._child.end()


if __name__ == "__main__":
    raise SystemExit(main())
