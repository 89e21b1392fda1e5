"""Budgets at runtime, against a real exporter: a budget made mid-period counts the period's
spend so far, acts when crossed (pause, resume when its limit is raised), survives kill -9, and
the config file's budgets cannot be changed here."""

from __future__ import annotations

import time
from typing import Any

from support import ExporterProcess, http_client

CONFIG = "budgets:\n  - {name: fleet-daily, limit_usd: 1000, period: day}\n"
RESEARCH = {"limit_usd": 5, "period": "day", "scope": {"task_type": "research"},
            "on_exceed": "pause"}


def call(exporter: ExporterProcess, method: str, path: str, body: Any = None,
         token: str | None = None) -> tuple[int, Any]:
    with http_client() as client:
        response = client.request(method, f"{exporter.url}{path}", json=body, headers={
            "Authorization": f"Bearer {token or exporter.token}"})
    return response.status_code, (response.json() if response.content else None)


def spend(exporter: ExporterProcess, task_id: str, usd: float) -> None:
    assert exporter.post_events([
        {"type": "task.submitted", "task_id": task_id, "task_type": "research"},
        {"type": "agent.created", "agent_id": f"a-{task_id}", "role": "ANALYST",
         "task_id": task_id},
        {"type": "agent.usage", "agent_id": f"a-{task_id}", "cost_usd": usd}]).status_code == 200


def commands_of(exporter: ExporterProcess, kind: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        items = [item for item in call(exporter, "GET", f"/api/v1/commands?kind={kind}")[1]
                 ["items"]]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, f"no {kind} came"
        time.sleep(0.2)


def test_a_runtime_budget_counts_the_period_so_far_acts_and_survives_kill9(exporter_factory):
    exporter = exporter_factory(config=CONFIG)
    spend(exporter, "r-1", 3.0)
    code, made = call(exporter, "PUT", "/api/v1/budgets/research-daily", RESEARCH)
    assert (code, made["spent_usd"], made["source"]) == (201, 3.0, "runtime")
    assert exporter.sample("orchestrator_budget_spent_usd", budget="research-daily",
                           period="day") == 3.0
    spend(exporter, "r-2", 3.0)
    [pause] = commands_of(exporter, "fleet.pause", 1)
    assert (pause["target"], pause["issued_by"]) == ({"task_type": "research"},
                                                     "budget:research-daily")
    admission = call(exporter, "GET", "/api/v1/admission?task_type=research")[1]
    assert admission == {"allowed": False, "budgets": ["research-daily"]}
    assert call(exporter, "GET", "/api/v1/admission?task_type=bug_fix")[1]["allowed"] is True

    code, raised = call(exporter, "PUT", "/api/v1/budgets/research-daily",
                        {**RESEARCH, "limit_usd": 10})
    assert (code, raised["limit_usd"], raised["spent_usd"]) == (200, 10.0, 6.0)
    [resume] = commands_of(exporter, "fleet.resume", 1)
    assert resume["target"] == {"task_type": "research"}
    assert call(exporter, "GET", "/api/v1/admission?task_type=research")[1]["allowed"] is True

    exporter.kill9()
    exporter.start()
    listed = {item["name"]: item for item in call(exporter, "GET", "/api/v1/budgets")[1]["items"]}
    assert (listed["research-daily"]["spent_usd"], listed["research-daily"]["limit_usd"]) == (
        6.0, 10.0)
    assert listed["fleet-daily"]["source"] == "config"
    time.sleep(1.5)  # the enforcer checks again after the restart: nothing new to queue
    assert len(call(exporter, "GET", "/api/v1/commands")[1]["items"]) == 2


def test_config_budgets_are_read_only_and_bad_bodies_store_nothing(exporter_factory):
    exporter = exporter_factory(config=CONFIG)
    assert call(exporter, "PUT", "/api/v1/budgets/fleet-daily", RESEARCH)[0] == 409
    assert call(exporter, "DELETE", "/api/v1/budgets/fleet-daily")[0] == 409
    assert call(exporter, "DELETE", "/api/v1/budgets/nope")[0] == 404
    code, body = call(exporter, "PUT", "/api/v1/budgets/x", {**RESEARCH, "period": "year"})
    assert (code, body["code"]) == (422, "invalid_budget") and "period" in body["message"]
    assert call(exporter, "POST", "/api/v1/budgets", {**RESEARCH, "name": "r"})[0] == 201
    assert call(exporter, "POST", "/api/v1/budgets", {**RESEARCH, "name": "r"})[0] == 409
    assert call(exporter, "DELETE", "/api/v1/budgets/r")[0] == 204
    names = [item["name"] for item in call(exporter, "GET", "/api/v1/budgets")[1]["items"]]
    assert names == ["fleet-daily"]
    assert exporter.sample("orchestrator_budget_limit_usd", budget="r", period="day") is None
    trail = call(exporter, "GET", "/api/v1/audit?action=budget.put")[1]["items"]
    assert [(row["target"], row["outcome"]) for row in trail] == [({"budget": "r"}, "created")]
