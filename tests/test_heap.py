"""exporter/heap.py: with the threshold fixed, freed large blocks leave resident memory."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
from support.exporter import repository_root

from exporter.heap import fix_mmap_threshold
from exporter.settings import Settings

# In a fresh interpreter: free one 8 MiB block (glibc then raises its threshold to 8 MiB), then
# allocate 3 MiB blocks with small blocks between them, free the large ones, and report how
# much of them stayed resident. The small blocks keep the freed space from the heap's top,
# where glibc would trim it.
PROGRAM = """
import json, sys
from exporter.heap import fix_mmap_threshold

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

fixed = fix_mmap_threshold(int(sys.argv[1]))
first = bytearray(8 << 20)
del first
before = rss()
large, small = [], []
for _ in range(20):
    large.append(bytearray(3 << 20))  # zeroed: every page touched
    small.append(bytes(2000))  # above Python's small-object limit: from malloc
grown = rss() - before
del large
print(json.dumps({"fixed": fixed, "grown": grown, "kept": rss() - before}))
"""


def _run(kib: int, **env: str) -> dict[str, object]:
    environment = {key: value for key, value in os.environ.items()
                   if key != "MALLOC_MMAP_THRESHOLD_"}
    environment.update(env, PYTHONPATH=str(repository_root()))
    result = subprocess.run([sys.executable, "-c", PROGRAM, str(kib)], env=environment,
                            capture_output=True, text=True, timeout=60, check=True)
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_large_blocks_leave_memory_with_the_threshold_fixed() -> None:
    default = Settings.model_fields["malloc_mmap_threshold_kib"].default
    assert default < 3 * 1024  # the blocks below are above it
    moving, fixed = _run(0), _run(default)
    assert moving["fixed"] is False and fixed["fixed"] is True
    sixty = 60 << 20
    assert moving["grown"] >= sixty * 0.9 and fixed["grown"] >= sixty * 0.9  # type: ignore[operator]
    # glibc's moving threshold served them from the heap, and the heap kept them.
    assert moving["kept"] >= sixty * 0.9  # type: ignore[operator]
    assert fixed["kept"] <= sixty * 0.1  # type: ignore[operator]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_glibcs_own_variable_wins() -> None:
    assert _run(128, MALLOC_MMAP_THRESHOLD_="131072")["fixed"] is False


def test_zero_leaves_the_threshold_alone() -> None:
    assert fix_mmap_threshold(0) is False
