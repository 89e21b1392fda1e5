"""The exporter as a real subprocess on a free loopback port, the way it runs in production."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from bench.environment import REPOSITORY, process_cpu_seconds, process_tree

READY_POLL_SECONDS = 0.01


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_client(timeout: float = 60.0) -> httpx.Client:
    """A client that ignores proxy variables: everything we talk to is on loopback."""
    return httpx.Client(timeout=timeout, trust_env=False)


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """Our environment without the developer's EXPORTER_* settings, the checkout importable."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXPORTER_")}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPOSITORY), os.environ.get("PYTHONPATH", "")) if part)
    env.update(extra)
    return env


class ExporterServer:
    """`python -m exporter serve` on a SQLite ledger; restartable on the same ledger and port."""

    def __init__(self, workdir: Path, *, token: str, synchronous: str) -> None:
        self.workdir = workdir
        self.database = workdir / "ledger.db"
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = child_environment({
            "EXPORTER_ADMIN_TOKEN": token, "EXPORTER_SQLITE_SYNCHRONOUS": synchronous,
            "PYTHONUNBUFFERED": "1"})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the exporter is not running")
        return self._process.pid

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait for /ready; return the seconds from spawning to the first 200."""
        argv = [sys.executable, "-m", "exporter", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--database-url", f"sqlite:///{self.database}"]
        with (self.workdir / "exporter.log").open("ab") as log:
            started = time.perf_counter()
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, env=self.environment,
                                             cwd=self.workdir, start_new_session=True)
        deadline = started + timeout
        with http_client(timeout=2.0) as client:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"the exporter exited with {self._process.returncode}; "
                                       f"see {self.workdir / 'exporter.log'}")
                try:
                    if client.get(f"{self.url}/ready").status_code == 200:
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"the exporter was not ready after {timeout} s")
                time.sleep(READY_POLL_SECONDS)

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM (the exporter commits what is queued), then SIGKILL; return the seconds."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return 0.0
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return time.perf_counter() - started

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) in bytes, summed over the exporter and its parse workers."""
        values: dict[str, int] = {"VmRSS": 0, "VmHWM": 0}
        for pid in process_tree(self.pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] += int(rest.split()[0]) * 1024
        return values

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def ledger_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.workdir.glob("ledger.db*"))

    def post(self, client: httpx.Client, events: list[dict[str, object]]) -> None:
        """POST one batch and insist that every event was accepted."""
        response = client.post(f"{self.url}/api/v1/events", content=orjson.dumps(events),
                               headers=self.headers())
        response.raise_for_status()
        if response.json()["accepted"] != len(events):
            raise RuntimeError(f"events refused: {response.text}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
