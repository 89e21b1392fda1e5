"""The test support itself: each fixture starts a real component that really answers."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy
from support import (
    LOOPBACK,
    AlertmanagerFactory,
    ExporterFactory,
    ExporterProcess,
    ManagedProcess,
    ProcessFailedError,
    PrometheusFactory,
    PrometheusQueryError,
    SlackMessage,
    SlackReceiver,
    find_binary,
    free_port,
    missing_component,
    parse_metrics,
    sample_value,
    wait_http,
    wait_until,
)

DEMO_EXPOSITION = """\
# HELP demo_value A value for the scrape test.
# TYPE demo_value gauge
demo_value{kind="answer"} 42
# HELP demo_requests_total Requests.
# TYPE demo_requests_total counter
demo_requests_total{path="/a"} 3
demo_requests_total{path="/b"} 4
"""


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = DEMO_EXPOSITION.encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: Prometheus scrapes every second."""


@pytest.fixture
def metrics_target() -> Iterator[str]:
    """host:port of a tiny HTTP server exposing DEMO_EXPOSITION at /metrics."""
    server = ThreadingHTTPServer((LOOPBACK, 0), _MetricsHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _read_if_exists(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# --- helpers ---------------------------------------------------------------------------------


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))


def test_wait_http_returns_the_ready_answer(metrics_target: str) -> None:
    response = wait_http(f"http://{metrics_target}/metrics", timeout=5)
    assert "demo_value" in response.text


def test_wait_http_times_out_with_the_last_error() -> None:
    with pytest.raises(TimeoutError, match="ConnectError"):
        wait_http(f"http://{LOOPBACK}:{free_port()}/", timeout=0.3)


def test_find_binary_searches_path_and_reports_absence() -> None:
    assert find_binary("sh") is not None
    assert find_binary("no-such-binary-for-the-tests") is None


def test_missing_component_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="gone"):
        missing_component("gone")


def test_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="gone"):
        missing_component("gone")


def test_a_process_that_dies_fails_fast_with_its_log_tail(tmp_path: Path) -> None:
    process = ManagedProcess(
        ["sh", "-c", "echo boom-marker >&2; exit 3"], log_path=tmp_path / "boom.log"
    ).start()
    started = time.monotonic()
    with pytest.raises(ProcessFailedError) as failure:
        process.wait_http(f"http://{LOOPBACK}:{free_port()}/", timeout=20)
    assert time.monotonic() - started < 5
    assert "boom-marker" in str(failure.value)
    assert "exit code 3" in str(failure.value)


def test_stop_kills_a_process_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"
    script = f"trap '' TERM; sleep 60 & echo $! > {child_pid_file}; wait"
    process = ManagedProcess(["sh", "-c", script], log_path=tmp_path / "stubborn.log").start()
    # Empty until the shell has written the pid: wait_until treats "" as "not yet".
    pid_text = wait_until(lambda: _read_if_exists(child_pid_file), 5)
    child_pid = int(pid_text)
    process.stop(timeout=0.3)
    assert process.returncode == -9
    wait_until(lambda: not _alive(child_pid), 5, describe="the child to die")


def test_parse_metrics_keys_samples_by_name_and_labels() -> None:
    samples = parse_metrics(DEMO_EXPOSITION)
    assert samples[("demo_value", frozenset({("kind", "answer")}))] == 42
    assert sample_value(DEMO_EXPOSITION, "demo_requests_total", path="/b") == 4
    assert sample_value(DEMO_EXPOSITION, "demo_requests_total") is None


# --- PostgreSQL ------------------------------------------------------------------------------


def test_postgres_accepts_a_query(postgres_url: str) -> None:
    assert postgres_url.startswith(f"postgresql+psycopg://postgres@{LOOPBACK}:")
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT 1 + 1")).scalar() == 2
            fsync = connection.execute(sqlalchemy.text("SHOW fsync")).scalar()
    finally:
        engine.dispose()
    assert fsync == "on"  # durability tests rely on real commits


def test_fresh_postgres_url_is_an_empty_database_of_its_own(
    fresh_postgres_url: str, postgres_url: str
) -> None:
    assert fresh_postgres_url != postgres_url
    engine = sqlalchemy.create_engine(fresh_postgres_url)
    try:
        with engine.begin() as connection:
            assert not sqlalchemy.inspect(connection).get_table_names()
            connection.execute(sqlalchemy.text("CREATE TABLE only_here (id int)"))
    finally:
        engine.dispose()
    plain = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain) as connection:
        tables = connection.execute("SELECT tablename FROM pg_tables WHERE tablename = 'only_here'")
        assert tables.fetchall() == []


# --- Prometheus, Alertmanager, Slack ---------------------------------------------------------

MINIMAL_PROMETHEUS = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
"""


def test_prometheus_starts_and_answers_queries(prometheus_factory: PrometheusFactory) -> None:
    prometheus = prometheus_factory(MINIMAL_PROMETHEUS)
    assert prometheus.query("up") == []
    [sample] = prometheus.query("vector(1)")
    assert sample["value"][1] == "1"
    with pytest.raises(PrometheusQueryError, match="bad_data"):
        prometheus.query("sum(")


def test_prometheus_scrapes_a_local_target(
    prometheus_factory: PrometheusFactory, metrics_target: str
) -> None:
    prometheus = prometheus_factory(
        MINIMAL_PROMETHEUS
        + f"""
scrape_configs:
  - job_name: demo
    static_configs:
      - targets: ["{metrics_target}"]
"""
    )
    [sample] = prometheus.wait_for('demo_value{job="demo"}', timeout=10)
    assert sample["value"][1] == "42"
    assert prometheus.query('up{job="demo"}')[0]["value"][1] == "1"
    [target] = prometheus.targets()
    assert target["health"] == "up"


def test_prometheus_with_a_bad_config_fails_with_its_log(
    prometheus_factory: PrometheusFactory,
) -> None:
    with pytest.raises(ProcessFailedError, match=r"(?s)exited unexpectedly.*no_such_field"):
        prometheus_factory("global:\n  no_such_field: 1\n")


def test_a_missing_binary_skips_the_fixture_outside_ci(
    prometheus_factory: PrometheusFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="prometheus"):
        prometheus_factory(MINIMAL_PROMETHEUS)


SLACK_ALERTMANAGER = """\
route:
  receiver: slack
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: slack
    slack_configs:
      - api_url: "{api_url}"
        channel: "#fleet-alerts"
        send_resolved: true
"""


def _slack_title(message: SlackMessage) -> str:
    attachments = (message.body or {}).get("attachments") or [{}]
    return str(attachments[0].get("title", ""))


def test_alertmanager_sends_a_posted_alert_to_slack(
    alertmanager_factory: AlertmanagerFactory, slack_receiver: SlackReceiver
) -> None:
    alertmanager = alertmanager_factory(SLACK_ALERTMANAGER.format(api_url=slack_receiver.url))
    alertmanager.post_alerts(
        [{"labels": {"alertname": "SupportSelfTest", "severity": "info"}, "annotations": {}}]
    )
    assert [alert["labels"]["alertname"] for alert in alertmanager.alerts()] == ["SupportSelfTest"]
    message = slack_receiver.wait_for(lambda m: "SupportSelfTest" in _slack_title(m), timeout=10)
    assert message.path.startswith("/services/")
    assert message.headers["Content-Type"].startswith("application/json")
    assert message.body["channel"] == "#fleet-alerts"
    assert "[FIRING:1]" in _slack_title(message)


ALWAYS_FIRING_RULES = """\
groups:
  - name: support
    rules:
      - alert: SupportAlwaysFiring
        expr: vector(1)
        labels:
          severity: info
"""


def test_prometheus_rule_fires_through_alertmanager_to_slack(
    prometheus_factory: PrometheusFactory,
    alertmanager_factory: AlertmanagerFactory,
    slack_receiver: SlackReceiver,
) -> None:
    alertmanager = alertmanager_factory(SLACK_ALERTMANAGER.format(api_url=slack_receiver.url))
    prometheus = prometheus_factory(
        MINIMAL_PROMETHEUS
        + f"""
rule_files: [rules/support.yml]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["{alertmanager.address}"]
""",
        files={"rules/support.yml": ALWAYS_FIRING_RULES},
    )
    assert prometheus.rules()[0]["rules"][0]["name"] == "SupportAlwaysFiring"
    wait_until(
        lambda: [a for a in prometheus.alerts() if a["state"] == "firing"], 10, describe="firing"
    )
    slack_receiver.wait_for(lambda m: "SupportAlwaysFiring" in _slack_title(m), timeout=10)


# --- the exporter ----------------------------------------------------------------------------

AGENT_CREATED = {
    "type": "agent.created",
    "id": "support-e-1",
    "agent_id": "support-a-1",
    "role": "BUILDER",
    "model": "claude-sonnet-4-5",
}


def _accepted(exporter: ExporterProcess, event_type: str) -> float | None:
    return exporter.sample("orchestrator_exporter_events_accepted_total", type=event_type)


def test_exporter_accepts_events_and_serves_metrics(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory()
    response = exporter.post_events([AGENT_CREATED])
    assert response.is_success, response.text
    assert _accepted(exporter, "agent.created") == 1
    assert "orchestrator_exporter_build_info" in exporter.metrics_text()


def test_exporter_refuses_a_wrong_token(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(token="the-right-one")
    response = exporter.post_events([AGENT_CREATED], headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


def test_exporter_restarts_on_its_port_after_kill9(exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory()
    assert exporter.post_events(AGENT_CREATED).is_success
    url = exporter.url
    exporter.kill9()
    assert not exporter.process.running
    exporter.restart()
    assert exporter.url == url
    assert _accepted(exporter, "agent.created") == 1


def test_exporter_runs_on_postgres(
    exporter_factory: ExporterFactory, fresh_postgres_url: str
) -> None:
    exporter = exporter_factory(database_url=fresh_postgres_url)
    assert exporter.post_events([AGENT_CREATED]).is_success
    assert _accepted(exporter, "agent.created") == 1


def test_no_component_outlives_its_test() -> None:
    """Run last in this module: the components of the tests above have all been stopped.

    The session's PostgreSQL server is meant to outlive them, so it is not looked for.
    """
    components = ("prometheus", "alertmanager", "exporter serve", "sleep 60")
    leftovers = [line for line in _child_processes() if any(name in line for name in components)]
    assert leftovers == []


def _child_processes() -> list[str]:
    """`pid args` of pytest's children: our components run in sessions of their own, but their
    parent stays this process until they are reaped."""
    own = str(os.getpid())
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            ppid = Path(cmdline.parent, "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if ppid == own and args:
            lines.append(f"{cmdline.parent.name} {args}")
    return lines
