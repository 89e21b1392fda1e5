"""Subscribers of the live stream: N Server-Sent Events connections in one asyncio process, each
reading as fast as the exporter sends and noting when its events arrived.

Per read from its socket a subscriber notes the monotonic time and the seq of the last whole
frame so far: the stream is in ledger order, so every event up to that seq had arrived by then.
The first subscriber also notes each frame's seq and event id, which ties seqs to the ingest
requests that carried them (bench/pacer.py notes when each was answered). Only that one parses
JSON: with 100 subscribers, parsing every event in each would measure this process, not the
exporter. For the same reason the HTTP is spoken directly over asyncio streams (`Connection:
close`, so the end of a response is the end of the connection). A subscriber that is cut off for
reading too slowly reconnects with `after=` the seq it was given, as `orchestrator-exporter tail`
does; one refused (503, at the subscriber cap) tries again after a pause.

The parent drives it over pipes, one line each way:

    (start)        connect every subscriber                     -> ready
    mark           note from now on (forget earlier notes)      -> marked
    report FILE    write the notes since `mark`                 -> a summary as one JSON line
    quit           disconnect                                   -> a summary as one JSON line

    python -m bench.subscribers --url URL --token T --count 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop

from bench.child import LineChild

READ_BYTES = 1 << 20
REFUSED_PAUSE_SECONDS = 0.05
_FRAME = re.compile(rb"\nid: (\d+)\ndata: ([^\n]*)")
_CUTOFF = re.compile(rb'event: cutoff\ndata: \{"resume_after": ?(\d+)\}')
_CONNECTED = re.compile(rb": connected at (\d+)\n")


class _Subscriber:
    """One subscriber across its reconnections."""

    def __init__(self, host: str, port: int, token: str, *, reference: bool) -> None:
        self.host, self.port, self.token = host, port, token
        self.reference = reference
        self.seq = 0  # the seq of the last whole frame received
        self.marked_seq = 0
        self.recording = False
        self.notes: list[tuple[float, int]] = []
        self.pairs: list[tuple[int, str]] = []  # (seq, event id), the reference subscriber's
        self.bytes = 0
        self.cut_offs = 0
        self.refused = 0
        self.sessions = 0
        self.connected = asyncio.Event()

    def mark(self) -> None:
        self.notes, self.pairs = [], []
        self.marked_seq, self.recording = self.seq, True

    async def run(self) -> None:
        while True:
            resume = await self._session()
            if resume is not None:
                self.seq = max(self.seq, resume)

    async def _session(self) -> int | None:
        """One connection until the server ends it; the cut-off's resume point, if any."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            after = f"?after={self.seq}" if self.sessions else ""
            writer.write(f"GET /api/v1/stream{after} HTTP/1.1\r\nHost: {self.host}\r\n"
                         f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n"
                         "Connection: close\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status == 503:
                self.refused += 1
                await asyncio.sleep(REFUSED_PAUSE_SECONDS)
                return None
            if status != 200:
                raise RuntimeError(f"the stream answered {head.decode(errors='replace')}")
            self.sessions += 1
            self.connected.set()
            return await self._read(reader)
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> int | None:
        tail = b""
        while data := await reader.read(READ_BYTES):
            arrived = time.monotonic()
            self.bytes += len(data)
            buffer = tail + data
            end = buffer.rfind(b"\n\n")
            if end < 0:
                tail = buffer
                continue
            # The tail keeps the frame's last newline: a frame that follows in the same chunk
            # starts the next read with `id:`, and is found by its preceding newline.
            whole, tail = buffer[:end + 2], buffer[end + 1:]
            self._note(arrived, whole)
            if (cutoff := _CUTOFF.search(whole)) is not None:
                self.cut_offs += 1
                return int(cutoff[1])
        return None

    def _note(self, arrived: float, whole: bytes) -> None:
        if not self.seq and (connected := _CONNECTED.search(whole)) is not None:
            self.seq = int(connected[1])  # where the stream starts: nothing before it comes
        # Every `id:` line follows a newline: the end of a frame or of a chunk header.
        start = whole.rfind(b"\nid: ")
        if start < 0:
            return  # comments only (connected, heartbeat)
        seq = int(whole[start + 5:whole.index(b"\n", start + 5)])
        if seq <= self.seq:
            return
        self.seq = seq
        if self.recording:
            self.notes.append((arrived, seq))
            if self.reference:
                self.pairs.extend((int(number), str(orjson.loads(payload)["id"]))
                                  for number, payload in _FRAME.findall(whole))

    def summary(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "cut_offs": self.cut_offs, "refused": self.refused,
                "sessions": self.sessions, "seq": self.seq}


def _summary(subscribers: list[_Subscriber], started: float, cpu_started: float
             ) -> dict[str, Any]:
    """Totals over the subscribers; CPU and seconds since they began to connect."""
    parts = [subscriber.summary() for subscriber in subscribers]
    cpu = time.process_time() - cpu_started
    return {"count": len(parts), "bytes": sum(part["bytes"] for part in parts),
            "cut_offs": sum(part["cut_offs"] for part in parts),
            "refused": sum(part["refused"] for part in parts),
            "reconnects": sum(part["sessions"] - 1 for part in parts),
            "lowest_seq": min(part["seq"] for part in parts),
            "highest_seq": max(part["seq"] for part in parts),
            "cpu_seconds": cpu, "seconds": time.monotonic() - started}


def _notes(subscribers: list[_Subscriber]) -> dict[str, Any]:
    return {"subscribers": [{"from": subscriber.marked_seq, "notes": subscriber.notes}
                            for subscriber in subscribers],
            "pairs": subscribers[0].pairs}


def _say(summary: dict[str, Any]) -> None:
    print(orjson.dumps(summary).decode(), flush=True)


async def _serve(url: str, token: str, count: int) -> None:
    address = urlsplit(url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    subscribers = [_Subscriber(host, port, token, reference=number == 0)
                   for number in range(count)]
    started, cpu_started = time.monotonic(), time.process_time()
    tasks = [asyncio.create_task(subscriber.run()) for subscriber in subscribers]
    waiting = asyncio.ensure_future(asyncio.gather(
        *(subscriber.connected.wait() for subscriber in subscribers)))
    racing: list[asyncio.Future[Any]] = [waiting, *tasks]
    done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        waiting.cancel()
        for task in done:
            task.result()  # a subscriber failed: say why
    print("ready", flush=True)
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            command, _, argument = line.strip().partition(" ")
            for task in tasks:
                if task.done():
                    task.result()
            if command == "mark":
                for subscriber in subscribers:
                    subscriber.mark()
                print("marked", flush=True)
            elif command == "report":
                Path(argument).write_bytes(orjson.dumps(_notes(subscribers)))
                _say(_summary(subscribers, started, cpu_started))
            elif command == "quit":
                break
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)
    _say(_summary(subscribers, started, cpu_started))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.subscribers")
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, required=True)
    arguments = parser.parse_args(argv)
    uvloop.run(_serve(arguments.url, arguments.token, arguments.count))
    return 0


class Subscribers:
    """The parent's handle on one subscribers process: every subscriber connected once built."""

    def __init__(self, *, url: str, token: str, count: int) -> None:
        self.count = count
        self._child = LineChild("bench.subscribers", ["--url", url, f"--token={token}",
                                                      "--count", str(count)])
        if self._child.hear() != "ready":
            raise RuntimeError("the subscribers failed to connect")

    @property
    def pid(self) -> int:
        return self._child.pid

    def mark(self) -> None:
        self._child.ask("mark")

    def report(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """The summary so far, and the notes since `mark` (see `bench.delivery`)."""
        summary = self._child.ask_json(f"report {path}")
        notes: dict[str, Any] = orjson.loads(path.read_bytes())
        return summary, notes

    def close(self) -> dict[str, Any]:
        """Disconnect every subscriber; the final summary."""
        return self._child.end_json()


if __name__ == "__main__":
    raise SystemExit(main())
