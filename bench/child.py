"""A helper process of the benchmark driven over pipes: the parent writes a command line, the
child answers with a line (a word, or a JSON object). The pacer and the stream subscribers run
this way, so that their work competes with the benchmark's own threads for no GIL."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson

from bench.server import child_environment


class LineChild:
    """`python -m module arguments...`, spoken to one line at a time."""

    def __init__(self, module: str, arguments: list[str]) -> None:
        self.module = module
        self._process = subprocess.Popen([sys.executable, "-m", module, *arguments],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=child_environment({}), text=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def say(self, line: str) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()

    def hear(self) -> str:
        """The next line; a child that ended instead fails the run."""
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self._process.kill()
            raise RuntimeError(f"{self.module} exited with {self._process.wait()}")
        return line.strip()

    def ask(self, line: str) -> str:
        self.say(line)
        return self.hear()

    def ask_json(self, line: str) -> dict[str, Any]:
        answer: dict[str, Any] = orjson.loads(self.ask(line))
        return answer

    def end(self, line: str = "quit") -> str:
        """Tell it to end; what it said last ("" when it had ended already)."""
        if self._process.poll() is not None:
            return ""
        assert self._process.stdout is not None
        self.say(line)
        last = self._process.stdout.read()
        self._process.wait(30)
        return last.strip()

    def end_json(self, line: str = "quit") -> dict[str, Any]:
        """`end`, its last line read as a JSON object; a child that had ended fails the run."""
        last = self.end(line)
        if not last:
            raise RuntimeError(f"{self.module} had ended before it was told to")
        answer: dict[str, Any] = orjson.loads(last)
        return answer
