"""`orchestrator-exporter tail` and `top` against a real exporter, read off a pseudo-terminal.

Each command runs in a pty of a fixed size (120x40) whose output goes through a terminal
emulator (pyte), so what the tests read is what a person would see. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import pyte
from support import ExporterProcess, free_port, http_client, wait_until
from support.exporter import repository_root

T = TypeVar("T")
COLUMNS, ROWS = 120, 40
WAIT = 30.0  # seconds: a deadline for anything the exporter and the command should do quickly
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Z0-9]|[=>78])")
EVENT_LINE = re.compile(r"^\s*(\d+)\s{2}\S")

BUDGETS = """
budgets:
  - {name: fleet-daily, limit_usd: 2, period: day}
  - {name: builders-monthly, limit_usd: 400, period: month, scope: {role: BUILDER}}
"""
# Nine events, seq 1 to 9 in a fresh ledger; costs given so that no price table is involved.
FLEET = [
    {"type": "task.submitted", "id": "ev-1", "task_id": "t-1", "task_type": "feature"},
    {"type": "agent.created", "id": "ev-2", "agent_id": "a-1", "role": "BUILDER",
     "model": "claude-sonnet-4-5", "task_id": "t-1", "context_limit_tokens": 200_000},
    {"type": "agent.status_changed", "id": "ev-3", "agent_id": "a-1", "status": "running"},
    {"type": "agent.usage", "id": "ev-4", "agent_id": "a-1", "input_tokens": 1200,
     "output_tokens": 300, "cost_usd": 1.25, "context_tokens": 50_000},
    {"type": "agent.tool_call", "id": "ev-5", "agent_id": "a-1", "tool": "Bash",
     "outcome": "error", "error_type": "timeout", "duration_seconds": 1.5},
    {"type": "log.entry", "id": "ev-6", "agent_id": "a-1", "level": "warning",
     "message": "disk nearly full"},
    {"type": "agent.created", "id": "ev-7", "agent_id": "a-2", "role": "reviewer",
     "model": "claude-haiku-4-5"},
    {"type": "agent_usage", "id": "ev-8", "agentId": "a-2", "inputTokens": 10, "cost_usd": 0.5},
    {"type": "workflow.started", "id": "ev-9", "run_id": "r-1", "workflow": "release",
     "steps": ["build"]},
]


class Terminal:
    """A command in a pseudo-terminal of COLUMNS x ROWS; `screen` is what it shows, `lines`
    everything it printed (escape sequences removed)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.master, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        self.process = subprocess.Popen(
            argv, stdin=follower, stdout=follower, stderr=follower, env=env,
            cwd=repository_root(), start_new_session=True, preexec_fn=_take_terminal)
        os.close(follower)
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.feed = pyte.ByteStream(self.screen)
        self.output = bytearray()
        self.closed = False  # the command has closed the terminal (it is exiting)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # a group already gone
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(WAIT)
        os.close(self.master)

    def lines(self) -> list[str]:
        text = ANSI.sub("", self.output.decode(errors="replace"))
        return text.replace("\r\n", "\n").split("\n")

    def rows(self) -> list[str]:
        return list(self.screen.display)

    def expect(self, condition: Callable[[], T], what: str, timeout: float = WAIT) -> T:
        """Read output until `condition()` is truthy, and return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.closed and self.process.poll() is not None):
                screen = "\n".join(row.rstrip() for row in self.rows())
                raise AssertionError(f"no {what} within {timeout:g}s; the screen:\n{screen}\n"
                                     f"the last lines:\n" + "\n".join(self.lines()[-20:]))
            if self.closed:
                time.sleep(min(remaining, 0.05))  # until it is reaped
            else:
                self._read(min(remaining, 0.2))

    def interrupt(self) -> int:
        """Ctrl-C, as typed: the exit code."""
        os.write(self.master, b"\x03")
        typed = time.monotonic()
        try:
            self.expect(lambda: self.process.poll() is not None, "exit after Ctrl-C")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self._diagnosis(typed)}") from None
        return self.process.returncode

    def _diagnosis(self, typed: float) -> str:
        """Where a command that ignored Ctrl-C stands: its process group, state and signal
        masks, each thread's kernel wait, then every Python thread's stack (SIGABRT makes
        faulthandler print them: PYTHONFAULTHANDLER, `client_env`)."""
        pid = self.process.pid
        notes = [f"{time.monotonic() - typed:.1f}s after Ctrl-C, pid {pid}:"]
        try:
            notes.append(f"process group {os.getpgid(pid)}, terminal's foreground group "
                         f"{os.tcgetpgrp(self.master)}")
        except OSError as error:
            notes.append(f"process group: {error!r}")
        notes += _proc_lines(pid)
        try:
            os.killpg(pid, signal.SIGABRT)
        except OSError as error:
            notes.append(f"SIGABRT to its group: {error!r}")
            self.process.send_signal(signal.SIGABRT)
        try:
            self.expect(lambda: self.process.poll() is not None, "exit after SIGABRT", 10.0)
        except AssertionError:
            notes += ["no exit within 10s of SIGABRT either", *_proc_lines(pid)]
        notes.append(f"exit code {self.process.returncode}, "
                     f"{time.monotonic() - typed:.1f}s after Ctrl-C; the last lines:")
        return "\n".join(notes + self.lines()[-60:])

    def _read(self, wait: float) -> None:
        if not select.select([self.master], [], [], wait)[0]:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: nothing holds the terminal open any more
            chunk = b""
        self.closed = not chunk
        self.output += chunk
        self.feed.feed(chunk)


def _proc_lines(pid: int) -> list[str]:
    """/proc's view of a process: state and signal masks, each thread's kernel wait (and its
    kernel stack where readable)."""
    lines: list[str] = []
    try:
        lines += [line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith(("State", "Sig", "ShdPnd", "Threads"))]
        for task in sorted(os.listdir(f"/proc/{pid}/task")):
            wchan = Path(f"/proc/{pid}/task/{task}/wchan").read_text()
            lines.append(f"thread {task}: waits in {wchan or '-'}")
            with contextlib.suppress(OSError):  # root only
                lines += ["    " + frame for frame in
                          Path(f"/proc/{pid}/task/{task}/stack").read_text().splitlines()]
    except OSError as error:
        lines.append(f"/proc/{pid}: {error!r}")
    return lines


def _take_terminal() -> None:
    # In the child, after setsid: the pty becomes its controlling terminal, so a Ctrl-C typed
    # there is a SIGINT to it.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    # As a shell starts a foreground job: Ctrl-C's default action, even if the test process
    # ignores SIGINT (an ignored signal stays ignored across exec, and Python then installs no
    # KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def command(*words: str) -> list[str]:
    return [sys.executable, "-m", "exporter", *words]


def client_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("EXPORTER_") and key not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(repository_root()), os.environ.get("PYTHONPATH", "")) if part)
    env["TERM"] = "xterm-256color"
    env["PYTHONFAULTHANDLER"] = "1"
    env.update(extra)
    return env


def connection_env(exporter: ExporterProcess) -> dict[str, str]:
    return client_env(EXPORTER_URL=exporter.url, EXPORTER_TOKEN=exporter.token)


def send(exporter: ExporterProcess, events: list[dict[str, object]]) -> None:
    response = exporter.post_events(events)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events)


def subscribers(exporter: ExporterProcess) -> int:
    with http_client() as client:
        response = client.get(f"{exporter.url}/api/v1/status",
                              headers={"Authorization": f"Bearer {exporter.token}"})
    response.raise_for_status()
    return int(response.json()["stream_subscribers"])


def event_lines(terminal: Terminal) -> list[tuple[int, str]]:
    """(seq, line) of each event line `tail` printed, in order."""
    return [(int(match[1]), line) for line in terminal.lines()
            if (match := EVENT_LINE.match(line))]


def printed_through(terminal: Terminal, last: int) -> list[tuple[int, str]] | None:
    printed = event_lines(terminal)
    return printed if printed and printed[-1][0] >= last else None


def row_with(rows: list[str], *words: str) -> str | None:
    return next((row for row in rows if all(word in row for word in words)), None)


def test_tail_prints_each_event_and_resumes_after_a_restart_without_repeats(exporter_factory):
    exporter = exporter_factory()
    send(exporter, FLEET)
    with Terminal(command("tail", "--after", "0"), connection_env(exporter)) as terminal:
        printed = terminal.expect(lambda: printed_through(terminal, 9), "the nine events")
        assert [seq for seq, _ in printed] == list(range(1, 10))
        lines = dict(printed)
        assert lines[2].split()[2:] == ["agent.created", "agent=a-1", "task=t-1", "BUILDER",
                                        "claude-sonnet-4-5"]
        assert "agent.usage" in lines[4] and lines[4].endswith(
            "agent=a-1  in 1,200, out 300, $1.25, context 50,000")
        assert lines[5].endswith("agent.tool_call        agent=a-1  Bash error (timeout) 1.5s")
        assert lines[6].endswith("agent=a-1  WARNING disk nearly full")
        # The alias and camelCase spellings read as the exporter reads them.
        assert lines[8].split()[2:] == ["agent.usage", "agent=a-2", "in", "10,", "$0.5000"]
        assert lines[9].split()[2:] == ["workflow.started", "run=r-1", "release"]

        exporter.restart()
        send(exporter, [{"type": "log.entry", "id": "ev-10", "level": "info",
                         "message": "back again", "task_id": "t-1"},
                        {"type": "task.started", "id": "ev-11", "task_id": "t-1"}])
        printed = terminal.expect(lambda: printed_through(terminal, 11), "the events sent "
                                  "after the restart")
        assert [seq for seq, _ in printed] == list(range(1, 12))
        assert printed[-2][1].endswith("task=t-1  INFO back again")
        assert any("reconnecting in" in line for line in terminal.lines())
        assert terminal.interrupt() == 0


def test_tail_filters_and_prints_json_from_flags(exporter_factory):
    exporter = exporter_factory()
    send(exporter, FLEET)
    argv = command("tail", "--url", exporter.url, "--token", exporter.token, "--after", "0",
                   "--agent-id", "a-1", "--types", "agent.usage,log.entry", "--json")
    with Terminal(argv, client_env()) as terminal:
        terminal.expect(lambda: any('"seq":6' in line for line in terminal.lines()),
                        "the last matching stored event")
        # Live now: an event of a-2 and one of a-1 of another type pass by; the marker matches.
        send(exporter, [{"type": "log.entry", "id": "ev-10", "level": "info",
                         "message": "not mine", "agent_id": "a-2"},
                        {"type": "agent.deleted", "id": "ev-11", "agent_id": "a-1"},
                        {"type": "log.entry", "id": "ev-12", "level": "error",
                         "message": "marker", "agent_id": "a-1"}])
        terminal.expect(lambda: any('"seq":12' in line for line in terminal.lines()),
                        "the marker")
        shown = [json.loads(line) for line in terminal.lines() if line.startswith('{"seq"')]
        assert [(item["seq"], item["event"]["id"]) for item in shown] == [
            (4, "ev-4"), (6, "ev-6"), (12, "ev-12")]
        assert shown[0]["event"] == FLEET[3]
        assert terminal.interrupt() == 0


def test_tail_and_top_fail_with_one_line_when_refused_or_unreachable(exporter_factory):
    exporter = exporter_factory()
    refusals = [(("top", "--once"), "wrong", "error: unauthorized: "),
                (("tail",), "wrong", "error: unauthorized: "),
                (("tail", "--types", "agent.nonsense"), exporter.token,
                 "error: invalid_query: types must name event types")]
    for words, token, message in refusals:
        result = subprocess.run(command(*words, "--url", exporter.url, "--token", token),
                                env=client_env(), capture_output=True, text=True,
                                timeout=WAIT, check=False)
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        assert result.stderr.startswith(message), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    for words in (("top", "--once"), ("tail",)):
        result = subprocess.run(command(*words), env=client_env(EXPORTER_URL=closed),
                                capture_output=True, text=True, timeout=WAIT, check=False)
        assert result.returncode == 1 and result.stdout == "", result.stderr
        assert result.stderr.startswith(f"error: cannot reach {closed}: "), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


def test_top_once_prints_the_fleet_with_its_numbers(exporter_factory):
    exporter = exporter_factory(config=BUDGETS)
    send(exporter, FLEET)
    result = subprocess.run(command("top", "--once"), env=connection_env(exporter),
                            capture_output=True, text=True, timeout=WAIT, check=False)
    assert result.returncode == 0, result.stderr
    rows: dict[str, list[str]] = {}  # each line by its first word, the first such line
    for line in result.stdout.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line.split())
    assert " ".join(rows["agents"]) == ("agents 2 live (pending 1, running 1) · roles BUILDER 1, "
                                        "REVIEWER 1 · tasks in flight 1 · active runs 1 · "
                                        "events 9")
    assert rows["spend"] == ["spend", "today", "$1.75", "this", "week", "$1.75", "this",
                             "month", "$1.75"]
    assert rows["fleet-daily"][:6] + rows["fleet-daily"][7:] == [
        "fleet-daily", "day", "fleet", "$1.75", "$2.00", "88%", "warning", "alert"]
    assert rows["builders-monthly"][:6] + rows["builders-monthly"][7:] == [
        "builders-monthly", "month", "role=BUILDER", "$1.25", "$400.00", "0%", "ok", "alert"]
    assert rows["a-1"] == ["a-1", "BUILDER", "running", "claude-sonnet-4-5", "t-1", "$1.25",
                           "1,500", "25%"]
    assert rows["a-2"][:6] == ["a-2", "REVIEWER", "pending", "claude-haiku-4-5", "-",
                               "$0.5000"]
    assert rows["t-1"][:4] == ["t-1", "feature", "pending", "$1.25"]
    assert rows["t-1"][6:9] == ["r-1", "release", "running"]


def test_top_shows_the_fleet_live_and_keeps_going_while_the_exporter_is_away(exporter_factory):
    exporter = exporter_factory(config=BUDGETS)
    send(exporter, FLEET)
    with Terminal(command("top", "--interval", "0.5"), connection_env(exporter)) as terminal:
        def shows(*words: str) -> Callable[[], str | None]:
            return lambda: row_with(terminal.rows(), *words)

        agent = terminal.expect(shows("a-1 ", "BUILDER"), "agent a-1")
        assert agent.split() == ["a-1", "BUILDER", "running", "claude-sonnet-4-5", "t-1",
                                 "$1.25", "1,500", "25%"]
        assert terminal.expect(shows("a-2 ", "REVIEWER"), "agent a-2")
        assert terminal.expect(shows("spend today $1.75", "this month $1.75"), "the spend")
        assert terminal.expect(shows("fleet-daily", "$2.00", "88%", "warning"), "a budget")
        assert terminal.expect(shows("builders-monthly", "role=BUILDER", "ok"), "a budget")

        send(exporter, [{"type": "agent.created", "id": "ev-10", "agent_id": "a-3",
                         "role": "TESTER", "model": "claude-haiku-4-5"}])
        assert terminal.expect(shows("a-3 ", "TESTER"), "the agent created meanwhile")

        exporter.process.stop()
        terminal.expect(shows("error: cannot reach"), "the error in the footer")
        assert "retrying every 0.5s" in " ".join(row.strip() for row in terminal.rows())
        assert row_with(terminal.rows(), "a-1 ", "BUILDER"), "the last reading stays shown"
        exporter.start()
        assert terminal.expect(shows("Ctrl-C quits"), "the footer without the error")
        assert not row_with(terminal.rows(), "error:")
        assert terminal.interrupt() == 0


def test_tail_resumes_after_a_cutoff_without_gaps_or_repeats(exporter_factory):
    # A reader that stops reading fills the exporter's buffer for it (100 events here): it is cut
    # off and must come back after the last event it was given.
    exporter = exporter_factory(env={"EXPORTER_STREAM_BUFFER_EVENTS": "100"})
    send(exporter, FLEET)
    with Terminal(command("tail"), connection_env(exporter)) as terminal:
        wait_until(lambda: subscribers(exporter) == 1, WAIT, describe="tail to subscribe")
        batches = 4  # of 1,000 events of 4 KB, sent while nobody reads the terminal
        for batch in range(batches):
            send(exporter, [{"type": "log.entry", "id": f"log-{batch}-{index}",
                             "level": "info", "message": f"{batch}.{index} " + "x" * 4000}
                            for index in range(1000)])
        last = len(FLEET) + 1000 * batches
        printed = terminal.expect(lambda: printed_through(terminal, last), "every event",
                                  timeout=120)
        assert [seq for seq, _ in printed] == list(range(len(FLEET) + 1, last + 1))
        assert any("cut off for reading too slowly" in line for line in terminal.lines())
        assert terminal.interrupt() == 0
