"""A real Prometheus server started from a config text."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .components import require_binary
from .network import free_port, http_client
from .polling import wait_until
from .processes import ManagedProcess
from .service import HttpService

# A file to put beside the config: its text, or a path to copy (a rule file of the repository).
FileSource = str | Path
Result = list[dict[str, Any]]


class PrometheusQueryError(RuntimeError):
    """The HTTP API answered with status "error" (a bad PromQL expression, a timeout)."""


class PrometheusServer(HttpService):
    """Prometheus with its config and TSDB in `workdir`.

    Files given in `files` are written next to `prometheus.yml`, so a config can name them by
    relative path (`rule_files: [alerts.yml]`). The blocks of a `tsdb` directory (backfilled by
    promtool) are copied into the TSDB before the start. Alerts are resent every second instead
    of every minute so that tests see Alertmanager receive them quickly.
    """

    def __init__(
        self,
        workdir: Path,
        config: str,
        *,
        files: Mapping[str, FileSource] | None = None,
        extra_args: Sequence[str] = (),
        tsdb: Path | None = None,
    ) -> None:
        binary = require_binary("prometheus", "prometheus")
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        for name, source in (files or {}).items():
            _place_file(workdir / name, source)
        if tsdb is not None:
            shutil.copytree(tsdb, workdir / "data")
        port = free_port()
        argv = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--web.enable-lifecycle",
            *extra_args,
        ]
        process = ManagedProcess(argv, log_path=workdir / "prometheus.log", cwd=workdir)
        super().__init__(process, port)

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self.process.start()
        self.process.wait_http(f"{self.url}/-/ready", timeout)
        return self

    def query(self, promql: str, at: float | None = None) -> Result:
        """Instant query: the `result` list (vector samples are dicts with metric and value)."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        result: Result = self._api("/api/v1/query", params)["result"]
        return result

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> Result:
        params = {"query": promql, "start": start, "end": end, "step": step}
        result: Result = self._api("/api/v1/query_range", params)["result"]
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[Result], bool] = bool,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> Result:
        """Query `promql` until `predicate(result)` holds (by default: any result) and return it."""
        last: Result = []

        def attempt() -> Result | None:
            nonlocal last
            last = self.query(promql)
            return last if predicate(last) else None

        try:
            return wait_until(attempt, timeout, interval=interval, describe=promql)
        except TimeoutError as error:
            raise AssertionError(f"{error}; last result: {last}") from None

    def targets(self) -> Result:
        """The active scrape targets, with their `health` and `lastError`."""
        active: Result = self._api("/api/v1/targets")["activeTargets"]
        return active

    def alerts(self) -> Result:
        """Alerts pending or firing (not the ones merely defined: see `rules`)."""
        alerts: Result = self._api("/api/v1/alerts")["alerts"]
        return alerts

    def rules(self) -> Result:
        """The loaded rule groups, each with its rules and their health."""
        groups: Result = self._api("/api/v1/rules")["groups"]
        return groups

    def reload(self) -> None:
        """Re-read the config file (after a test rewrote it); raises if Prometheus rejects it."""
        with http_client() as client:
            response = client.post(f"{self.url}/-/reload")
        if response.status_code != 200:
            raise PrometheusQueryError(f"reload failed: {response.text.strip()}")

    def _api(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        with http_client() as client:
            response = client.get(f"{self.url}{path}", params=params)
        try:
            body = response.json()
        except ValueError:
            response.raise_for_status()
            raise
        if body.get("status") != "success":
            raise PrometheusQueryError(
                f"{path} {dict(params or {})}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]


class PrometheusFactory(Protocol):
    """The `prometheus_factory` fixture: start a Prometheus, stopped when the test ends."""

    def __call__(
        self,
        config: str,
        *,
        files: Mapping[str, FileSource] | None = None,
        extra_args: Sequence[str] = (),
        tsdb: Path | None = None,
    ) -> PrometheusServer: ...


def _place_file(target: Path, source: FileSource) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path):
        shutil.copyfile(source, target)
    else:
        target.write_text(source)
