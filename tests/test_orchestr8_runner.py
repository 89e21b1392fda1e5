"""The JavaScript command runner for @orchestr8 (forwarders/orchestr8/runner.mjs): its own
node:test suite, and a workflow.cancel issued to a real exporter reaching the execution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import support
from support import ExporterFactory, ExporterProcess, http_client, wait_until

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "forwarders" / "orchestr8" / "test" / "drive-runner.mjs"
NODE_TIMEOUT = 120.0
# The exporter refuses a cancel (404) until the forwarder's execution.queued has reached it.
RUN_KNOWN_TIMEOUT = 10.0
COMMAND_TIMEOUT = 20.0
METRICS_TIMEOUT = 15.0
OPERATOR = "op-secret"
ENGINE = "engine-secret"


@pytest.mark.integration
def test_a_workflow_cancel_issued_to_a_real_exporter_cancels_the_execution(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    node = support.require_binary("node", "nodejs")
    tokens = support.write_tokens_file(tmp_path / "tokens.yml", [
        ("alice", "operator", OPERATOR), ("engine", "ingest", ENGINE)])
    exporter = exporter_factory(env={"EXPORTER_TOKENS_FILE": str(tokens)})
    stderr_path = tmp_path / "driver.stderr"
    with support.node_script(node, DRIVER, env={"EXPORTER_URL": exporter.url,
                                                "EXPORTER_TOKEN": ENGINE},
                             stderr_path=stderr_path, timeout=NODE_TIMEOUT) as (stdin, stdout):
        ready = stdout.readline().split()
        assert ready[:1] == ["READY"] and len(ready) == 2, (
            f"the driver printed {ready}:\n{stderr_path.read_text()}")
        run_id = ready[1]

        command = _issue_cancel(exporter, run_id)
        done = wait_until(lambda: _finished(exporter, command["id"]), COMMAND_TIMEOUT,
                          describe=lambda: f"command {command['id']} to finish\n"
                          f"driver: {stderr_path.read_text()}")
        assert (done["status"], done["detail"]) == (
            "succeeded", {"cancelled": True, "run_id": run_id}), done
        wait_until(lambda: _cancelled_runs(exporter) == 1.0, METRICS_TIMEOUT,
                   describe=lambda: "runs_total{workflow=wf-long,status=cancelled} == 1, "
                   f"seen {_cancelled_runs(exporter)}")
        stdin.close()
        summary = json.loads(stdout.readline() or "null")
    assert summary["status"] == "cancelled", summary
    assert summary["stats"] == {"taken": 1, "succeeded": 1, "failed": 0, "rejected": 0,
                                "repeated": 0}, summary


def _call(exporter: ExporterProcess, method: str, path: str,
          body: Any = None) -> tuple[int, Any]:
    with http_client() as client:
        response = client.request(method, f"{exporter.url}{path}", json=body,
                                  headers={"Authorization": f"Bearer {OPERATOR}"})
    return response.status_code, response.json()


def _issue_cancel(exporter: ExporterProcess, run_id: str) -> dict[str, Any]:
    """POST the workflow.cancel, again while the exporter does not know the run yet (404)."""
    answers: list[tuple[int, Any]] = []

    def issued() -> dict[str, Any] | None:
        answers.append(_call(exporter, "POST", "/api/v1/commands", {
            "kind": "workflow.cancel", "target": {"run_id": run_id}}))
        code, command = answers[-1]
        assert code in (201, 404), answers[-1]
        return command if code == 201 else None

    return wait_until(issued, RUN_KNOWN_TIMEOUT, interval=0.1,
                      describe=lambda: f"the exporter to take the cancel, last {answers[-1:]}")


def _finished(exporter: ExporterProcess, command_id: str) -> dict[str, Any] | None:
    code, command = _call(exporter, "GET", f"/api/v1/commands/{command_id}")
    assert code == 200, command
    return command if command["status"] in ("succeeded", "failed", "expired") else None


def _cancelled_runs(exporter: ExporterProcess) -> float:
    return sum(value for (name, labels), value in exporter.metrics().items()
               if name == "orchestrator_workflow_runs_total"
               and {("workflow", "wf-long"), ("status", "cancelled")} <= labels)
