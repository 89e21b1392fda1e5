"""From a stuck agent to its cancelled task, with every real part: the exporter, Prometheus with
the project's rules, Alertmanager posting its webhook to the exporter, and a stand-in of the
Python orchestrator (its real control surface) driven through `OrchestratorControl` and taking
its commands over HTTP. The alert resolves once the orchestrator reports the cancellation, and
the audit trail tells the whole story."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import (
    AlertmanagerFactory,
    ExporterFactory,
    PrometheusFactory,
    http_client,
    write_tokens_file,
)
from test_alert_actions import webhook_only
from test_alerts_e2e import prometheus_config

from exporter.client import ExporterClient
from exporter.integrations.orchestrator import OrchestratorControl

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
ALERTMANAGER_TOKEN, ORCHESTRATOR_TOKEN = "am-operator-secret", "orchestrator-secret"
CONFIG = """
alert_actions:
  actions:
    - {alert: OrchestratorAgentStuck, command: task.cancel}
"""


class StuckOrchestrator:
    """`Orchestrator.execute` whose agent hangs; cancelled, it reports as the tracker would."""

    def __init__(self, client: ExporterClient) -> None:
        self.client = client
        self.cancelled = threading.Event()

    async def execute(self, prompt: str, task_type: str = "custom",
                      execution_mode: str = "sequential") -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.client.emit({"type": "task.cancelled", "task_id": "t-stuck"})
            self.client.emit({"type": "agent.status_changed", "agent_id": "a-stuck",
                              "status": "cancelled"})
            self.cancelled.set()
            raise


def firing(prometheus: Any) -> bool:
    return bool(prometheus.query('ALERTS{alertname="OrchestratorAgentStuck",'
                                 'alertstate="firing"}'))


def test_a_stuck_agent_s_alert_cancels_its_task_and_then_resolves(
        exporter_factory: ExporterFactory, prometheus_factory: PrometheusFactory,
        alertmanager_factory: AlertmanagerFactory, tmp_path: Path,
        orchestrator_loop: asyncio.AbstractEventLoop) -> None:
    tokens = write_tokens_file(tmp_path / "tokens.yml", [
        ("alertmanager", "operator", ALERTMANAGER_TOKEN),
        ("orchestrator", "ingest", ORCHESTRATOR_TOKEN)])
    exporter = exporter_factory(config=CONFIG, env={"EXPORTER_TOKENS_FILE": str(tokens)})
    alertmanager = alertmanager_factory(webhook_only(exporter.url, tmp_path, ALERTMANAGER_TOKEN))
    rules = {f"rules/{path.name}": path for path in (ROOT / "prometheus" / "rules").glob("*.yml")}
    prometheus = prometheus_factory(prometheus_config(exporter.address, alertmanager.address),
                                    files=rules)

    client = ExporterClient(exporter.url, ORCHESTRATOR_TOKEN, flush_interval=0.05)
    orchestrator = StuckOrchestrator(client)
    control = OrchestratorControl(orchestrator, orchestrator_loop)
    stop = threading.Event()
    worker = threading.Thread(target=client.serve_commands, args=(control.handlers(),),
                              kwargs={"stop": stop, "wait": 1.0}, daemon=True)
    worker.start()
    try:
        # The task runs in the orchestrator; its agent's last sign of life is 11 minutes old.
        control.submit({"id": "local", "args": {"prompt": "refactor", "task_id": "t-stuck"},
                        "target": {}})
        silent_since = time.time() - 660
        for event in ({"type": "task.submitted", "task_id": "t-stuck", "task_type": "bug_fix"},
                      {"type": "task.started", "task_id": "t-stuck"},
                      {"type": "agent.created", "agent_id": "a-stuck", "role": "BUILDER",
                       "task_id": "t-stuck"},
                      {"type": "agent.status_changed", "agent_id": "a-stuck",
                       "status": "running"}):
            client.emit({**event, "timestamp": silent_since})
        assert client.flush(timeout=10)

        started = time.monotonic()
        assert orchestrator.cancelled.wait(60), "the task was never cancelled"
        cancelled_after = time.monotonic() - started
        deadline = time.monotonic() + 60
        while firing(prometheus):
            assert time.monotonic() < deadline, "the alert never resolved"
            time.sleep(0.5)
        print(f"\nstuck agent to cancelled task: {cancelled_after:.1f} s; alert resolved "
              f"{time.monotonic() - started:.1f} s after the start")
    finally:
        stop.set()
        worker.join(10)
        client.close()

    with http_client() as http:
        headers = {"Authorization": f"Bearer {exporter.token}"}
        [command] = http.get(f"{exporter.url}/api/v1/commands", headers=headers).json()["items"]
        trail = http.get(f"{exporter.url}/api/v1/audit", headers=headers).json()["items"]
    assert (command["kind"], command["target"]["task_id"], command["status"]) == (
        "task.cancel", "t-stuck", "succeeded")
    story = [(row["token"], row["action"], row["outcome"]) for row in trail
             if row["outcome"] != "duplicate"]
    assert story == [("alertmanager", "command.task.cancel", "queued"),
                     ("orchestrator", "deliver.task.cancel", "delivered"),
                     ("orchestrator", "result.task.cancel", "succeeded")]
    assert trail[0]["detail"]["alert"] == "OrchestratorAgentStuck"
    assert exporter.sample("orchestrator_tasks_total", source="default", task_type="bug_fix",
                           status="cancelled", analyst="excluded") == 1
