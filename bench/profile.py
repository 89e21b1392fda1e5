"""py-spy on the exporter during a run, and a per-thread summary of where its time went."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_THREAD_ID = re.compile(r"^thread \((?:0x)?[0-9A-Fa-f]+\):?\s*")


def py_spy() -> str:
    """The py-spy next to our interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.is_file() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return found


class Recording:
    """`py-spy record -f raw --threads` on a running process, for `seconds`."""

    def __init__(self, pid: int, seconds: float, output: Path) -> None:
        self.output = output
        self._process = subprocess.Popen(
            [py_spy(), "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-f", "raw",
             "-o", str(output), "--threads"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> Path:
        _, errors = self._process.communicate(timeout=120)
        if self._process.returncode != 0 or not self.output.is_file():
            raise RuntimeError(f"py-spy failed: {errors.strip()[-500:]}")
        return self.output


@dataclass(slots=True)
class ThreadProfile:
    thread: str
    samples: int
    self_time: list[tuple[str, int]]
    total_time: list[tuple[str, int]]


def summarise(raw: Path, top: int = 15) -> list[ThreadProfile]:
    """Per thread (threads of one name merged), the `top` frames by self and by total samples."""
    own: dict[str, Counter[str]] = {}
    total: dict[str, Counter[str]] = {}
    samples: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *frames = stack.split(";")
        name = _THREAD_ID.sub("", thread) or thread
        samples[name] += count
        if frames:
            own.setdefault(name, Counter())[frames[-1]] += count
            totals = total.setdefault(name, Counter())
            for frame in set(frames):
                totals[frame] += count
    return [ThreadProfile(name, count, own.get(name, Counter()).most_common(top),
                          total.get(name, Counter()).most_common(top))
            for name, count in samples.most_common()]


def format_profile(profiles: list[ThreadProfile]) -> str:
    lines: list[str] = []
    for profile in profiles:
        lines.append(f"thread {profile.thread}: {profile.samples} samples")
        for title, frames in (("self", profile.self_time), ("total", profile.total_time)):
            lines.append(f"  by {title} time:")
            lines.extend(f"    {count / profile.samples:6.1%}  {count:6d}  {frame}"
                         for frame, count in frames)
    return "\n".join(lines)
