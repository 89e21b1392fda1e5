"""Alerts that act: a real Alertmanager posts its webhook to the exporter, whose alert_actions
turn a stuck agent's alert into a task.cancel of its task, once however often it is repeated;
dry-run commands nothing; alerts that name no target are skipped and audited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support import ExporterProcess, http_client, write_tokens_file

OPERATOR = "alertmanager-secret"
ACTIONS = """
alert_actions:
  dry_run: {dry_run}
  actions:
    - {{alert: OrchestratorAgentStuck, command: task.cancel, ttl_seconds: 600}}
    - {{alert: OrchestratorBudgetExceeded, command: fleet.pause}}
budgets:
  - {{name: research-daily, limit_usd: 5, period: day, scope: {{task_type: research}}}}
"""


def start(exporter_factory: Any, tmp_path: Path, *, dry_run: bool = False) -> ExporterProcess:
    tokens = write_tokens_file(tmp_path / "tokens.yml", [("alertmanager", "operator", OPERATOR)])
    exporter = exporter_factory(config=ACTIONS.format(dry_run=str(dry_run).lower()),
                                env={"EXPORTER_TOKENS_FILE": str(tokens)})
    assert exporter.post_events([
        {"type": "task.submitted", "task_id": "t-7", "task_type": "bug_fix"},
        {"type": "agent.created", "agent_id": "a-7", "role": "BUILDER", "task_id": "t-7"},
        {"type": "agent.status_changed", "agent_id": "a-7", "status": "running"},
    ]).status_code == 200
    return exporter


def commands(exporter: ExporterProcess) -> list[dict[str, Any]]:
    with http_client() as client:
        response = client.get(f"{exporter.url}/api/v1/commands",
                              headers={"Authorization": f"Bearer {exporter.token}"})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def webhook(exporter: ExporterProcess, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    payload = {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "status": "firing",
               "receiver": "exporter-actions", "groupLabels": {}, "commonLabels": {},
               "commonAnnotations": {}, "externalURL": "http://am", "alerts": alerts}
    with http_client() as client:
        response = client.post(f"{exporter.url}/api/v1/alertmanager/webhook", json=payload,
                               headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, **labels}, "annotations": {},
            "startsAt": "2026-12-02T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus", "fingerprint": f"fp-{name}-{len(labels)}"}


def webhook_only(exporter_url: str, directory: Path, token: str) -> str:
    """An Alertmanager config that sends every alert to the exporter's webhook, at once and
    again every second (production waits and repeats longer: alertmanager/alertmanager.yml)."""
    secret = directory / "exporter_token"
    secret.write_text(token)
    return f"""
route:
  receiver: exporter-actions
  group_by: [alertname, agent_id]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1s
receivers:
  - name: exporter-actions
    webhook_configs:
      - url: {exporter_url}/api/v1/alertmanager/webhook
        send_resolved: false
        http_config:
          authorization: {{type: Bearer, credentials_file: {secret}}}
"""


@pytest.mark.integration
def test_alertmanager_s_webhook_cancels_the_stuck_agent_s_task_once(
        exporter_factory, alertmanager_factory, tmp_path):
    exporter = start(exporter_factory, tmp_path)
    alertmanager = alertmanager_factory(webhook_only(exporter.url, tmp_path, OPERATOR))
    alertmanager.post_alerts([{"labels": {"alertname": "OrchestratorAgentStuck",
                                          "severity": "warning", "source": "default",
                                          "agent_id": "a-7", "role": "BUILDER"}}])
    deadline = time.monotonic() + 30
    while not commands(exporter):
        assert time.monotonic() < deadline, "no command came from the alert"
        time.sleep(0.2)
    time.sleep(4)  # Alertmanager repeats the notification every second meanwhile
    [command] = commands(exporter)
    assert (command["kind"], command["target"], command["issued_by"]) == (
        "task.cancel", {"task_id": "t-7", "source": "default"}, "alertmanager")
    assert command["args"]["alert"] == "OrchestratorAgentStuck"
    duplicates = exporter.sample("orchestrator_exporter_commands_total", kind="task.cancel",
                                 outcome="duplicate")
    assert duplicates is not None and duplicates >= 1
    with http_client() as client:
        trail = client.get(f"{exporter.url}/api/v1/audit?action=command.task.cancel",
                           headers={"Authorization": f"Bearer {exporter.token}"}).json()
    assert trail["items"][0]["detail"]["alert"] == "OrchestratorAgentStuck"


def test_dry_run_commands_nothing_and_says_what_it_would(exporter_factory, tmp_path):
    exporter = start(exporter_factory, tmp_path, dry_run=True)
    answer = webhook(exporter, [alert("OrchestratorAgentStuck", agent_id="a-7")])
    assert answer["dry_run"] is True
    assert [item["would_issue"] for item in answer["commands"]] == [
        {"kind": "task.cancel", "target": {"task_id": "t-7"}}]
    assert commands(exporter) == []


def test_budget_alerts_pause_the_budget_s_scope_and_unusable_alerts_are_skipped(
        exporter_factory, tmp_path):
    exporter = start(exporter_factory, tmp_path)
    answer = webhook(exporter, [
        alert("OrchestratorBudgetExceeded", budget="research-daily", period="day"),
        alert("OrchestratorAgentStuck", agent_id="a-unknown"),
        alert("OrchestratorAgentStuck", status="resolved", agent_id="a-7"),
        alert("OrchestratorCostAnomaly"),
    ])
    [paused] = answer["commands"]
    assert (paused["command"]["kind"], paused["command"]["target"]) == (
        "fleet.pause", {"task_type": "research"})
    assert [(item["alert"], item["reason"]) for item in answer["skipped"]] == [
        ("OrchestratorAgentStuck", "its labels name no target for task.cancel")]
    with http_client() as client:
        refused = client.post(f"{exporter.url}/api/v1/alertmanager/webhook",
                              json={"alerts": "nope"},
                              headers={"Authorization": f"Bearer {OPERATOR}"})
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_payload")


def test_a_fleet_wide_budget_is_never_paused_and_a_resolved_alert_resumes_its_pause(
        exporter_factory, tmp_path):
    exporter = start(exporter_factory, tmp_path)
    with http_client() as client:
        response = client.put(f"{exporter.url}/api/v1/budgets/all-daily",
                              json={"limit_usd": 1, "period": "day"},
                              headers={"Authorization": f"Bearer {exporter.token}"})
    assert response.status_code == 201
    fleet_wide = webhook(exporter, [alert("OrchestratorBudgetExceeded", budget="all-daily")])
    assert (fleet_wide["commands"], [item["reason"] for item in fleet_wide["skipped"]]) == (
        [], ["its labels name no target for fleet.pause"])
    scoped = alert("OrchestratorBudgetExceeded", budget="research-daily")
    webhook(exporter, [scoped])
    ended = webhook(exporter, [{**scoped, "status": "resolved",
                                "endsAt": "2026-12-02T10:30:00Z"}])
    assert [(item["command"]["kind"], item["command"]["target"])
            for item in ended["commands"]] == [("fleet.resume", {"task_type": "research"})]
    assert [command["kind"] for command in commands(exporter)] == ["fleet.pause",
                                                                   "fleet.resume"]
