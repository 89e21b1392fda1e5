"""The load generator: a separate process posting pre-serialised batches over several connections.

It runs in its own process so that building requests never competes with the benchmark's other
threads for a GIL. The parent (`LoadRun`) and the child talk over pipes: the child builds and
serialises every body, connects, says `ready`; the parent starts whatever should watch the run
(a scraper, py-spy) and says `go`; the child sends until every batch is answered or the time
bound passes, and prints its result as one JSON line.

    python -m bench.loadgen --url URL --token T --events N --batch-size 500 --connections 4
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.server import child_environment, http_client
from bench.workload import serialised_batches

# A refused batch (503 busy) is retried after this pause; it never happened in our runs.
BUSY_RETRY_SECONDS = 0.05


@dataclass(slots=True)
class _Tally:
    events: int = 0
    duplicates: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    first_failure: str = ""
    latencies: list[float] = field(default_factory=list)


class _Sender:
    """Threads, each with its own connection, taking the next body until none or time is up."""

    def __init__(self, url: str, token: str, batches: list[tuple[int, bytes]],
                 connections: int) -> None:
        self.url = f"{url}/api/v1/events"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.sizes = [size for size, _ in batches]
        self.bodies = [body for _, body in batches]
        self.next_index = 0
        self.lock = threading.Lock()
        self.tally = _Tally()
        self.clients = [http_client() for _ in range(connections)]
        for client in self.clients:  # open the connections before the clock starts
            client.get(f"{url}/health").raise_for_status()
        self.deadline = 0.0

    def run(self, max_seconds: float) -> float:
        started = time.perf_counter()
        self.deadline = started + max_seconds
        threads = [threading.Thread(target=self._work, args=(client,)) for client in self.clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - started

    def _take(self) -> int | None:
        with self.lock:
            if self.next_index >= len(self.bodies) or time.perf_counter() > self.deadline:
                return None
            self.next_index += 1
            return self.next_index - 1

    def _work(self, client: httpx.Client) -> None:
        while (index := self._take()) is not None:
            self._send(client, index)

    def _send(self, client: httpx.Client, index: int) -> None:
        while True:
            sent = time.perf_counter()
            try:
                response = client.post(self.url, content=self.bodies[index],
                                       headers=self.headers)
            except httpx.HTTPError as error:
                self._fail(f"{type(error).__name__}: {error}")
                return
            answered = time.perf_counter()
            if response.status_code == 503 and answered < self.deadline:
                with self.lock:
                    self.tally.retries += 1
                time.sleep(BUSY_RETRY_SECONDS)
                continue
            break
        if response.status_code != 200:
            self._fail(f"{response.status_code}: {response.text[:300]}")
            return
        answer = response.json()
        with self.lock:
            tally = self.tally
            tally.requests += 1
            tally.events += answer["accepted"] + answer["duplicates"]
            tally.duplicates += answer["duplicates"]
            tally.latencies.append(answered - sent)
            if answer["accepted"] + answer["duplicates"] != self.sizes[index]:
                tally.failures += 1
                tally.first_failure = tally.first_failure or f"short answer {answer}"

    def _fail(self, message: str) -> None:
        with self.lock:
            self.tally.failures += 1
            self.tally.first_failure = self.tally.first_failure or message

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _quantile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, required=True)
    arguments = parser.parse_args(argv)
    bodies = serialised_batches(arguments.events, arguments.batch_size, seed=arguments.seed)
    sender = _Sender(arguments.url, arguments.token, bodies, arguments.connections)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    wall_started = time.time()
    cpu = time.process_time()
    seconds = sender.run(arguments.max_seconds)
    cpu = time.process_time() - cpu
    sender.close()
    tally = sender.tally
    print(orjson.dumps({
        "events": tally.events, "duplicates": tally.duplicates, "requests": tally.requests,
        "retries": tally.retries, "failures": tally.failures,
        "first_failure": tally.first_failure, "seconds": seconds,
        "events_per_second": tally.events / seconds if seconds else 0.0,
        "client_cpu_us_per_event": cpu / max(1, tally.events) * 1e6,
        "request_p50_ms": _quantile(tally.latencies, 0.5) * 1000,
        "request_p99_ms": _quantile(tally.latencies, 0.99) * 1000,
        "completed": tally.events >= sum(sender.sizes),
        "wall_started": wall_started, "wall_ended": time.time(),
    }).decode(), flush=True)
    return 0


class LoadRun:
    """The parent's handle on one load generator process: `ready()`, then `go()`, `result()`."""

    def __init__(self, *, url: str, token: str, events: int, batch_size: int, connections: int,
                 max_seconds: float, seed: int) -> None:
        argv = [sys.executable, "-m", "bench.loadgen", "--url", url, f"--token={token}",
                "--events", str(events), "--batch-size", str(batch_size),
                "--connections", str(connections), "--max-seconds", str(max_seconds),
                "--seed", str(seed)]
        self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=child_environment({}), text=True)

    def ready(self) -> None:
        """Wait until the bodies are built and the connections open."""
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if line != "ready":
            self._process.kill()
            raise RuntimeError(f"the load generator failed to start: {line!r}")

    def go(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write("go\n")
        self._process.stdin.flush()

    def result(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        self._process.wait()
        if not line:
            raise RuntimeError(f"the load generator exited with {self._process.returncode}")
        result: dict[str, Any] = orjson.loads(line)
        if result["failures"]:
            raise RuntimeError(f"{result['failures']} batches failed: {result['first_failure']}")
        return result


if __name__ == "__main__":
    raise SystemExit(main())
