"""The exporter as a real subprocess, the way it runs in production."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from .metrics import parse_metrics, sample_value
from .network import free_port, http_client
from .processes import ManagedProcess
from .service import HttpService

NDJSON = "application/x-ndjson"


def repository_root() -> Path:
    return Path(__file__).resolve().parents[2]


class ExporterProcess(HttpService):
    """`python -m exporter serve` on a fixed loopback port, so `restart` keeps its address."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        token: str,
        config_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        _require_exporter_module()
        self.workdir = workdir
        self.database_url = database_url
        self.token = token
        port = free_port()
        argv = [
            sys.executable, "-m", "exporter", "serve",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--database-url", database_url,
        ]  # fmt: skip
        if config_path is not None:
            argv += ["--config", str(config_path)]
        argv += list(extra_args)
        process = ManagedProcess(
            argv,
            log_path=workdir / "exporter.log",
            name="exporter",
            env=_exporter_environment(token, env or {}),
            cwd=workdir,
        )
        super().__init__(process, port)

    def start(self, timeout: float = 30.0) -> ExporterProcess:
        self.process.start()
        self.process.wait_http(f"{self.url}/ready", timeout)
        return self

    def restart(self, timeout: float = 30.0) -> ExporterProcess:
        """Stop if still running (gracefully), then start again with the same arguments and port."""
        self.process.stop()
        return self.start(timeout)

    def kill9(self) -> None:
        """Crash the exporter: SIGKILL, no chance to flush or close anything."""
        self.process.kill9()

    def post_events(
        self,
        events: Any,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST /api/v1/events with the admin token; the response is returned, never raised.

        `events` may be a list or dict (encoded as JSON, or one JSON object per line when
        `content_type` is NDJSON) or str/bytes sent as they are, for malformed-body tests.
        `headers` override the defaults, e.g. {"Authorization": "Bearer wrong"}.
        """
        all_headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        all_headers.update(headers or {})
        with http_client() as client:
            return client.post(
                f"{self.url}/api/v1/events",
                content=_encode(events, content_type),
                headers=all_headers,
            )

    def metrics_text(self) -> str:
        with http_client() as client:
            response = client.get(f"{self.url}/metrics")
        response.raise_for_status()
        return response.text

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_metrics(self.metrics_text())

    def sample(self, name: str, **labels: str) -> float | None:
        """The current value of one sample with exactly these labels, or None."""
        return sample_value(self.metrics_text(), name, **labels)


class ExporterFactory(Protocol):
    """The `exporter_factory` fixture: start an exporter, stopped when the test ends."""

    def __call__(
        self,
        *,
        database_url: str | None = None,
        config: str | Path | None = None,
        token: str = ...,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> ExporterProcess: ...


def _require_exporter_module() -> None:
    # The exporter is the product, not an optional component: its absence always fails.
    if not (repository_root() / "exporter" / "__main__.py").is_file():
        pytest.fail("exporter/__main__.py does not exist: cannot run `python -m exporter`")


def _exporter_environment(token: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without the developer's EXPORTER_* settings, plus the test's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXPORTER_")}
    # The checkout is not necessarily installed into the venv.
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(repository_root()), os.environ.get("PYTHONPATH", "")) if part
    )
    env["PYTHONUNBUFFERED"] = "1"
    env["EXPORTER_ADMIN_TOKEN"] = token
    env.update(extra)
    return env


def _encode(events: Any, content_type: str) -> bytes:
    if isinstance(events, bytes):
        return events
    if isinstance(events, str):
        return events.encode()
    if content_type.startswith(NDJSON):
        items = events if isinstance(events, list) else [events]
        return "".join(json.dumps(item) + "\n" for item in items).encode()
    return json.dumps(events).encode()


def write_tokens_file(path: Path, tokens: Sequence[tuple[str, str, str]]) -> Path:
    """An EXPORTER_TOKENS_FILE holding (name, role, secret) as the exporter wants them: the
    SHA-256 of each secret, never the secret."""
    lines = [f"  - {{name: {name}, role: {role}, "
             f"sha256: {hashlib.sha256(secret.encode()).hexdigest()}}}"
             for name, role, secret in tokens]
    path.write_text("tokens:\n" + "\n".join(lines) + "\n")
    return path
