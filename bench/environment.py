"""The machine a run measured, and how busy it was: numbers mean little without these."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPOSITORY: Path = Path(__file__).resolve().parents[1]


def load_average() -> float:
    """The one-minute load average."""
    return round(os.getloadavg()[0], 2)


@dataclass(frozen=True, slots=True)
class Environment:
    date: str
    cpu_count: int
    python: str
    sqlite: str
    platform: str
    commit: str
    exporter_modified: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe() -> Environment:
    return Environment(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        cpu_count=os.cpu_count() or 0,
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        platform=platform.platform(terse=True),
        commit=_git("rev-parse", "--short", "HEAD") or "unknown",
        # Several people work in one checkout: say when the exporter measured is not the commit.
        exporter_modified=bool(_git("status", "--porcelain", "--", "exporter")),
    )


def _git(*arguments: str) -> str:
    try:
        completed = subprocess.run(["git", "-C", str(REPOSITORY), *arguments],
                                   capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip()


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of a running process (all its threads) and of its
    running descendants (the exporter's parse workers)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        # After the command name: state is field 3, utime 14 and stime 15 (man 5 proc).
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_tree(pid: int) -> list[int]:
    """`pid` and its running descendants."""
    tree, index = [pid], 0
    while index < len(tree):
        try:
            tasks = list(Path(f"/proc/{tree[index]}/task").iterdir())
        except OSError:
            tasks = []
        for task in tasks:
            try:
                tree.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
        index += 1
    return tree


def _machine_busy_seconds() -> float:
    # The first line of /proc/stat: cpu user nice system idle iowait irq softirq steal ...
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


class ForeignLoad:
    """The cores that processes outside the benchmark used over a span: the noise in a number.

    The load average cannot tell: during a measurement it mostly counts the benchmark's own
    processes. Ours are this process, its children that have ended (load generators, stopped
    exporters) and the running processes named in `pids`.
    """

    def __init__(self, pids: tuple[int, ...] = ()) -> None:
        self.pids = pids
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        times = os.times()
        own = (times.user + times.system + times.children_user + times.children_system
               + sum(process_cpu_seconds(pid) for pid in self.pids))
        return time.monotonic(), _machine_busy_seconds(), own

    def cores(self) -> float:
        (started, busy_before, own_before), (ended, busy, own) = self._start, self._sample()
        return round(max(0.0, (busy - busy_before - (own - own_before)) / (ended - started)), 2)


def wait_for_quiet(threshold: float, max_wait: float, *, poll: float = 10.0) -> float:
    """Wait until the load average is below `threshold` (at most `max_wait` s); return it."""
    deadline = time.monotonic() + max_wait
    load = load_average()
    while load >= threshold and time.monotonic() < deadline:
        print(f"load average {load:.2f} >= {threshold}: waiting", file=sys.stderr, flush=True)
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        load = load_average()
    return load
