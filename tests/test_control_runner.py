"""Commands carried out in an orchestrator: the runner (once per id), the in-process channel,
and the Python orchestrator's handlers over HTTP with a stand-in that has its real signatures
(async `execute(prompt, task_type, execution_mode)`, `create_agent(role, name, system_prompt)`,
`delete_agent(agent_id)`; no cancel or pause of its own)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry
from support import ExporterProcess, http_client, write_tokens_file

from exporter.client import ExporterClient
from exporter.control.commands import parse_command
from exporter.control.runner import CommandRunner, ControlChannel
from exporter.integrations.orchestrator import OrchestratorControl
from exporter.service import build_exporter
from exporter.settings import Settings

OPERATOR, ORCHESTRATOR = "op-secret", "orchestrator-secret"


def test_a_command_delivered_twice_runs_once_and_answers_the_same():
    calls: list[str] = []

    def cancel(command: dict[str, Any]) -> str:
        calls.append(command["id"])
        return "cancelled"

    runner = CommandRunner({"task.cancel": cancel})
    command = {"id": "c-1", "kind": "task.cancel", "target": {"task_id": "t"}, "args": {}}
    assert runner.run(command) == ("succeeded", "cancelled")
    assert runner.run(command) == ("succeeded", "cancelled")
    assert calls == ["c-1"]
    assert runner.run({**command, "id": "c-2", "kind": "agent.create"}) == (
        "rejected", "this orchestrator has no handler for agent.create")


def test_the_in_process_channel_runs_what_is_queued(tmp_path):
    exporter = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"),
                              registry=CollectorRegistry())
    exporter.start()
    try:
        paused: list[dict[str, str]] = []
        channel = ControlChannel(exporter.commands, {
            "fleet.pause": lambda command: paused.append(command["target"]) or "paused"})
        request = parse_command({"kind": "fleet.pause", "target": {"role": "ANALYST"}},
                                args_size=0)
        command, _ = exporter.commands.create(request, issued_by="test")
        channel.start()
        deadline = time.monotonic() + 10
        while exporter.commands.get(command.id).status != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        channel.stop()
        assert paused == [{"role": "ANALYST"}]
        assert exporter.commands.get(command.id).detail == "paused"
    finally:
        exporter.close()


class StandInOrchestrator:
    """`Orchestrator`'s control surface: its tasks run until done or cancelled."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, str]] = []
        self.cancelled: list[str] = []
        self.agents: dict[str, str] = {}

    async def execute(self, prompt: str, task_type: str = "custom",
                      execution_mode: str = "sequential") -> str:
        self.started.append((prompt, task_type, execution_mode))
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.append(prompt)
            raise
        return "done"

    async def create_agent(self, role: str, name: str | None = None,
                           system_prompt: str | None = None) -> str:
        agent_id = f"agent-{len(self.agents) + 1}"
        self.agents[agent_id] = role
        return agent_id

    async def delete_agent(self, agent_id: str) -> bool:
        return self.agents.pop(agent_id, None) is not None


def issue(exporter: ExporterProcess, body: dict[str, Any]) -> dict[str, Any]:
    with http_client() as client:
        response = client.post(f"{exporter.url}/api/v1/commands", json=body,
                               headers={"Authorization": f"Bearer {OPERATOR}"})
    assert response.status_code == 201, response.text
    command: dict[str, Any] = response.json()
    return command


def settled(exporter: ExporterProcess, command: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        with http_client() as client:
            current: dict[str, Any] = client.get(
                f"{exporter.url}/api/v1/commands/{command['id']}",
                headers={"Authorization": f"Bearer {OPERATOR}"}).json()
        if current["status"] in ("succeeded", "failed"):
            return current
        assert time.monotonic() < deadline, current
        time.sleep(0.05)


def test_the_python_orchestrator_submits_cancels_pauses_and_manages_agents_over_http(
        exporter_factory, tmp_path, orchestrator_loop):
    tokens = write_tokens_file(tmp_path / "tokens.yml", [
        ("alice", "operator", OPERATOR), ("orchestrator", "ingest", ORCHESTRATOR)])
    exporter = exporter_factory(env={"EXPORTER_TOKENS_FILE": str(tokens)})
    orchestrator = StandInOrchestrator()
    control = OrchestratorControl(orchestrator, orchestrator_loop)
    stop = threading.Event()
    client = ExporterClient(exporter.url, ORCHESTRATOR)
    worker = threading.Thread(target=client.serve_commands, args=(control.handlers(),),
                              kwargs={"stop": stop, "wait": 1.0}, daemon=True)
    worker.start()
    try:
        submitted = settled(exporter, issue(exporter, {"kind": "task.submit", "args": {
            "prompt": "fix add()", "task_type": "bug_fix", "task_id": "t-9"}}))
        assert (submitted["status"], submitted["detail"]) == ("succeeded", {"task_id": "t-9"})
        # the tracker tells the exporter of the task, so the ledger knows it is running
        client.emit({"type": "task.submitted", "task_id": "t-9", "task_type": "bug_fix"})
        assert client.flush(timeout=10)
        cancelled = settled(exporter, issue(exporter, {"kind": "task.cancel",
                                                       "target": {"task_id": "t-9"}}))
        assert cancelled["status"] == "succeeded"
        deadline = time.monotonic() + 5
        while orchestrator.cancelled != ["fix add()"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)

        settled(exporter, issue(exporter, {"kind": "fleet.pause", "target": {}}))
        refused = settled(exporter, issue(exporter, {"kind": "task.submit",
                                                     "args": {"prompt": "more"}}))
        assert (refused["status"], refused["detail"]) == (
            "failed", "new custom tasks are paused")
        settled(exporter, issue(exporter, {"kind": "fleet.resume", "target": {}}))
        assert settled(exporter, issue(exporter, {"kind": "task.submit", "args": {
            "prompt": "more"}}))["status"] == "succeeded"

        created = settled(exporter, issue(exporter, {"kind": "agent.create",
                                                     "args": {"role": "tester"}}))
        agent_id = created["detail"]["agent_id"]
        client.emit({"type": "agent.created", "agent_id": agent_id, "role": "tester"})
        assert client.flush(timeout=10)
        deleted = settled(exporter, issue(exporter, {"kind": "agent.delete",
                                                     "target": {"agent_id": agent_id}}))
        assert deleted["detail"] == {"agent_id": agent_id, "deleted": True}
        assert orchestrator.agents == {}
        assert [prompt for prompt, _, _ in orchestrator.started] == ["fix add()", "more"]
    finally:
        stop.set()
        worker.join(10)
        client.close()
