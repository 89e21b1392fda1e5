"""The Python orchestrator in-process: its progress callback, its executor's tracker (with the
un-awaited `agent_completed`) and its MetricsCollector, driven the way its code drives them.

The stand-ins below have the real signatures and call patterns (jeffjacobsen/orchestrator at
cfe485ea: Agent._call_progress_callback awaits only coroutines; WorkflowExecutor wraps the agent's
callback into tracker calls through `call_method`, and calls `agent_completed(id, cost)` without
await, for failed agents too; MetricsCollector.record_event appends {timestamp, type, data}).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from support.metrics import parse_metrics
from test_stream_acceptance import Samples, persistent_samples, total

from exporter.callback import MonitorCallback
from exporter.client import ExporterClient
from exporter.integrations.orchestrator import (
    ExporterTracker,
    async_progress_callback,
    follow_metrics_collector,
    progress_callback,
)
from exporter.service import build_exporter
from exporter.settings import Settings


@dataclass
class StandInAgent:
    """What the executor needs of `Agent`: its id, role, callback and final running cost."""

    agent_id: str
    role: str  # AgentRole.value: lower case
    tools: list[str]
    cost: float
    fails: bool = False
    progress_callback: Callable[[str, str], Any] | None = None

    async def _call_progress_callback(self, event: str, data: str = "") -> None:
        if self.progress_callback is not None:
            result = self.progress_callback(event, data)
            if inspect.iscoroutine(result):
                await result

    async def execute_task(self) -> bool:
        await self._call_progress_callback("started")
        await self._call_progress_callback("thinking")
        for tool in self.tools:
            await self._call_progress_callback("tool_call", tool)
        if self.fails:
            await self._call_progress_callback("failed", "Command failed with exit code 1")
            return False
        await self._call_progress_callback("completed")
        return True


class StandInExecutor:
    """`WorkflowExecutor.execute_sequential`'s use of its `progress_tracker`."""

    def __init__(self, tracker: Any) -> None:
        self.progress_tracker = tracker

    async def execute_sequential(self, agents: list[StandInAgent]) -> None:
        for agent in agents:
            agent.progress_callback = self._wrapper(agent)
            await agent.execute_task()
            # executor.py: called for failed agents too, and without await
            self.progress_tracker.agent_completed(agent.agent_id, agent.cost)

    def _wrapper(self, agent: StandInAgent) -> Callable[[str, str], Any]:
        tracker = self.progress_tracker

        async def call_method(name: str, *args: Any) -> None:
            result = getattr(tracker, name)(*args)
            if inspect.iscoroutine(result):
                await result

        async def progress_callback(event: str, data: str) -> None:
            if event == "started":
                await call_method("agent_created", agent.agent_id,
                                  f"{agent.role.capitalize()} Agent", agent.role)
                await call_method("agent_started", agent.agent_id)
            elif event == "thinking":
                await call_method("thinking", agent.agent_id)
            elif event == "tool_call":
                await call_method("tool_call", agent.agent_id, data)
            elif event == "failed":
                await call_method("agent_failed", agent.agent_id, data)

        return progress_callback


def fleet() -> list[StandInAgent]:
    return [
        StandInAgent("9a307b23-72aa-402b-ba75-401ab385cb3e", "analyst", ["Read", "Grep"], 0.0412),
        StandInAgent("1c7b4783-0b7f-48c8-9d42-f491a8f88de0", "builder",
                     ["Read", "Edit", "Bash"], 0.13712455),
        StandInAgent("5d2a9e47-3c18-4b6d-8f0a-7e41c9b2d365", "tester", ["Bash"], 0.0051,
                     fails=True),
        StandInAgent("0b6f3c1e-6a52-4f0e-9a57-1d2f5c7e8a90", "reviewer", [], 0.02),
    ]


def run_executor(sink: Callable[[Mapping[str, Any]], None]) -> None:
    asyncio.run(StandInExecutor(ExporterTracker(sink)).execute_sequential(fleet()))


def in_process_samples(tmp_path: Path, drive: Callable[[MonitorCallback], None]) -> Samples:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'in-process.db'}")
    exporter = build_exporter(settings, registry=CollectorRegistry())
    exporter.start()
    try:
        callback = MonitorCallback(exporter.pipeline, strict=True)
        drive(callback)
        assert callback.flush(timeout=30)
        assert callback.rejected == 0
        return parse_metrics(exporter.renderer.render().decode())
    finally:
        exporter.close()


def assert_executor_totals(samples: Samples) -> None:
    assert round(total(samples, "orchestrator_cost_usd_total") * 1e9) == 203_424_550
    assert round(total(samples, "orchestrator_cost_usd_total", role="BUILDER") * 1e9) == \
        137_124_550
    # the failed tester's cost counts; its status stays failed
    assert round(total(samples, "orchestrator_cost_usd_total", role="TESTER") * 1e9) == 5_100_000
    assert total(samples, "orchestrator_tool_calls_total", outcome="unknown") == 6
    assert total(samples, "orchestrator_tool_calls_total", outcome="success") == 0
    assert total(samples, "orchestrator_agents_created_total") == 4
    assert total(samples, "orchestrator_agents", status="completed") == 3
    assert total(samples, "orchestrator_agents", status="failed") == 1
    assert total(samples, "orchestrator_log_entries_total", level="error") == 1


def test_the_tracker_driven_like_the_executor_gives_the_same_totals_in_process_and_over_http(
        tmp_path, exporter_factory):
    local = in_process_samples(tmp_path, lambda callback: run_executor(callback.emit))
    assert_executor_totals(local)

    exporter = exporter_factory()
    client = ExporterClient(exporter.url, exporter.token, flush_interval=0.05)
    run_executor(client.emit)
    assert client.close(timeout=30)
    assert client.dropped == 0
    remote = exporter.metrics()
    assert_executor_totals(remote)
    assert persistent_samples(remote) == persistent_samples(local)


def test_the_un_awaited_agent_completed_needs_no_event_loop():
    seen: list[Mapping[str, Any]] = []
    tracker = ExporterTracker(seen.append)
    assert tracker.agent_completed("a-1", 0.25) is None  # nothing left to await
    assert [event["type"] for event in seen] == ["agent.usage", "agent.status_changed"]
    assert seen[0]["totals"] is True and seen[0]["cost_usd"] == 0.25


@pytest.mark.parametrize("make", [progress_callback, async_progress_callback])
def test_a_progress_callback_bound_to_one_agent_never_raises_into_it(tmp_path, make):
    def drive(callback: MonitorCallback) -> None:
        agent = StandInAgent("b1d4", "builder", ["Read", "Write"], 0.0)
        agent.progress_callback = make(callback.emit, agent.agent_id, role="builder")
        assert asyncio.run(agent.execute_task()) is True

        def broken(event: Mapping[str, Any]) -> None:
            raise RuntimeError("exporter gone")

        failing = StandInAgent("c2e5", "tester", ["Bash"], 0.0, fails=True)
        failing.progress_callback = make(broken, failing.agent_id)
        assert asyncio.run(failing.execute_task()) is False  # its own failure, not ours

    samples = in_process_samples(tmp_path, drive)
    assert total(samples, "orchestrator_agents_created_total", role="BUILDER") == 1
    assert total(samples, "orchestrator_tool_calls_total", outcome="unknown") == 2
    assert total(samples, "orchestrator_agents", status="completed") == 1


@dataclass
class StandInCollector:
    """`MetricsCollector`: `events` and `record_event`, with no way to subscribe."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def record_event(self, event_type: str, data: dict[str, Any]) -> None:
        self.events.append({"timestamp": datetime.now(UTC).isoformat(), "type": event_type,
                            "data": data})


def test_metrics_collector_events_are_followed_with_their_final_totals(tmp_path):
    collector = StandInCollector()
    collector.record_event("agent_created", {"agent_id": "a-early", "name": "Planner Agent",
                                             "role": "planner"})

    def drive(callback: MonitorCallback) -> None:
        stop = follow_metrics_collector(collector, callback.emit)
        collector.record_event("agent_created", {"agent_id": "a-late", "name": "Builder Agent",
                                                 "role": "builder"})
        for agent_id, cost in (("a-early", 0.011), ("a-late", 0.13712455)):
            now = datetime.now(UTC)  # real AgentMetrics dump: datetimes, not strings
            collector.record_event("agent_deleted", {"agent_id": agent_id, "metrics": {
                "agent_id": agent_id, "total_tokens": 300, "input_tokens": 100,
                "output_tokens": 200, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0, "total_cost": cost, "tool_calls": 4,
                "created_at": now, "updated_at": now}})
        stop()
        collector.record_event("agent_created", {"agent_id": "a-after", "name": "x",
                                                 "role": "tester"})

    samples = in_process_samples(tmp_path, drive)
    assert total(samples, "orchestrator_agents_created_total") == 2
    assert round(total(samples, "orchestrator_cost_usd_total") * 1e9) == 148_124_550
    assert total(samples, "orchestrator_tokens_total", type="output") == 400
    assert total(samples, "orchestrator_agents_created_total", role="PLANNER") == 1


def test_follow_starts_with_events_recorded_before(tmp_path):
    collector = StandInCollector()
    seen: list[Mapping[str, Any]] = []
    collector.record_event("error", {"agent_id": "a", "error": "boom"})
    stop = follow_metrics_collector(collector, seen.append, source="prod-1")
    collector.record_event("status_change", {"agent_id": "a", "old_status": "created",
                                             "new_status": "running"})
    stop()
    assert [(event["type"], event["source"]) for event in seen] == [
        ("error", "prod-1"), ("status_change", "prod-1")]
