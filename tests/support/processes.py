"""A subprocess with a log file, stopped gracefully and then killed."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from .network import wait_http


class ProcessFailedError(RuntimeError):
    """A managed process died or did not become ready; the message carries its log tail."""


class ManagedProcess:
    """A subprocess whose stdout and stderr go to `log_path`.

    It runs in its own session, so `kill9` can take down any children it forked and a Ctrl-C in
    the terminal reaches pytest (whose finalizers stop it) rather than the component directly.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.argv = [str(part) for part in argv]
        self.log_path = log_path
        self.name = name or Path(self.argv[0]).name
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Append, so that the log of a restarted process still shows why it was restarted.
        with self.log_path.open("ab") as log:
            log.write(f"--- starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                **_user_arguments(self.user),
            )
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> ProcessFailedError:
        """An error about this process that shows its state and the end of its log."""
        state = "running" if self.running else f"exit code {self.returncode}"
        return ProcessFailedError(
            f"{self.name}: {what} ({state}, log {self.log_path})\n"
            f"--- last lines of the log ---\n{self.log_tail()}"
        )

    def check_running(self) -> None:
        if not self.running:
            raise self.failure("exited unexpectedly")

    def wait_http(self, url: str, timeout: float, *, status: int = 200) -> httpx.Response:
        """Wait for `url` to answer `status`, failing early if the process dies meanwhile."""
        try:
            return wait_http(url, timeout, status=status, check=self.check_running)
        except TimeoutError as error:
            raise self.failure(str(error)) from None

    def wait(self, timeout: float) -> int:
        """Wait for a one-shot process to exit and return its exit code (killing it on timeout)."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise self.failure(f"still running after {timeout:g}s") from None

    def stop(self, timeout: float = 10.0) -> None:
        """Send `stop_signal`, wait up to `timeout` seconds, then kill whatever is left."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout)
        self.kill9()

    def kill9(self) -> None:
        """SIGKILL the process and its session's other processes, like a crash would."""
        if self._popen is None:
            return
        # ProcessLookupError: the process and all its children are already gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        self._popen.wait()


def _user_arguments(user: str | None) -> dict[str, Any]:
    """Popen arguments that drop to `user` directly, without a runuser process in between.

    A wrapper like runuser would receive our signals instead of the component and turns a slow
    graceful stop into a SIGKILL after two seconds.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
