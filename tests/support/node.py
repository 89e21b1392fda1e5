"""A Node script run beside a test, talking over its stdin and stdout."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from .exporter import repository_root


@contextmanager
def node_script(node: str, script: Path, *, env: Mapping[str, str], stderr_path: Path,
                timeout: float) -> Iterator[tuple[TextIO, TextIO]]:
    """Its stdin and stdout; at the end of the block it must exit 0 (its stderr is shown)."""
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [node, str(script)], cwd=repository_root(), env={**os.environ, **env}, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    # readline() has no timeout of its own: a script that hangs is killed, ending its stdout.
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        assert process.stdin is not None and process.stdout is not None
        yield process.stdin, process.stdout
        if not process.stdin.closed:
            process.stdin.close()
        returncode = process.wait(timeout)
        assert returncode == 0, f"{script.name} exited with {returncode}:\n" \
            f"{stderr_path.read_text()}"
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
