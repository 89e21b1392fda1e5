"""A real Alertmanager started from a config text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .components import require_binary
from .network import free_port, http_client
from .processes import ManagedProcess
from .service import HttpService


class AlertmanagerServer(HttpService):
    """Alertmanager with its config and storage in `workdir`, clustering off.

    An empty `--cluster.listen-address` disables gossip, which otherwise binds a second port and
    delays the first notification while it waits for peers to settle.
    """

    def __init__(self, workdir: Path, config: str, *, extra_args: Sequence[str] = ()) -> None:
        binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")
        self.workdir = workdir
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(config)
        port = free_port()
        argv = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            *extra_args,
        ]
        process = ManagedProcess(argv, log_path=workdir / "alertmanager.log", cwd=workdir)
        super().__init__(process, port)

    def start(self, timeout: float = 30.0) -> AlertmanagerServer:
        self.process.start()
        self.process.wait_http(f"{self.url}/-/ready", timeout)
        return self

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (GET /api/v2/alerts)."""
        with http_client() as client:
            response = client.get(f"{self.url}/api/v2/alerts")
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Push alerts as Prometheus would (POST /api/v2/alerts)."""
        with http_client() as client:
            response = client.post(f"{self.url}/api/v2/alerts", json=alerts)
        if response.status_code != 200:
            raise AssertionError(f"Alertmanager refused the alerts: {response.text.strip()}")


class AlertmanagerFactory(Protocol):
    """The `alertmanager_factory` fixture: start an Alertmanager, stopped when the test ends."""

    def __call__(self, config: str, *, extra_args: Sequence[str] = ()) -> AlertmanagerServer: ...
