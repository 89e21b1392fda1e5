"""A process that only spends CPU: a control for the stream subscribers' own cost.

The 100 subscribers run on the exporter's machine (loopback only), in one process that takes
about half a core to read what they are sent. Ingest at its maximum already uses every core,
so part of the drop measured with subscribers is that process's CPU, whatever the exporter
does. This process spends the same share of a core (busy for that part of every 10 ms, asleep
for the rest) with no subscriber at all: the ingest drop it causes is the part of the
subscribers' drop that the machine, not the exporter, pays.

    (start)    -> ready
    quit       -> {"seconds": s, "cpu_seconds": c} and exit

    python -m bench.burner --cores 0.5
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from bench.child import LineChild

PERIOD_SECONDS = 0.01


def _burn(cores: float, stop: threading.Event) -> None:
    busy = PERIOD_SECONDS * cores
    while not stop.is_set():
        start = time.perf_counter()
        while time.perf_counter() - start < busy:
            pass
        time.sleep(max(0.0, PERIOD_SECONDS - (time.perf_counter() - start)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burner")
    parser.add_argument("--cores", type=float, required=True, help="share of one core, 0 to 1")
    arguments = parser.parse_args(argv)
    stop = threading.Event()
    started, cpu = time.perf_counter(), time.process_time()
    worker = threading.Thread(target=_burn, args=(min(1.0, max(0.0, arguments.cores)), stop))
    worker.start()
    print("ready", flush=True)
    sys.stdin.readline()  # "quit", or the parent gone
    stop.set()
    worker.join()
    print(orjson.dumps({"seconds": time.perf_counter() - started,
                        "cpu_seconds": time.process_time() - cpu}).decode(), flush=True)
    return 0


class Burner:
    """The parent's handle: burning from construction until `close`."""

    def __init__(self, cores: float) -> None:
        self._child = LineChild("bench.burner", ["--cores", f"{cores:.3f}"])
        if self._child.hear() != "ready":
            raise RuntimeError("the burner failed to start")

    @property
    def pid(self) -> int:
        return self._child.pid

    def close(self) -> dict[str, Any]:
        """Stop; its seconds and CPU seconds."""
        return self._child.end_json()


if __name__ == "__main__":
    sys.exit(main())
