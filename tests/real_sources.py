"""Seeded streams in the shapes the real orchestrators' code emits, with their expected totals.

Written from reading that code (jeffjacobsen/orchestrator at cfe485ea, nathanvale/orchestr8 at
e3bf9077/04a1277c), never copied from it:

- `monitor_stream`: `MetricsCollector.events` entries {timestamp (UTC, +00:00), type, data}:
  agent_created (role lower-case), status_change, error, agent_deleted whose `metrics` are the
  agent's final running totals.
- `dashboard_stream`: the sample dashboard's WebSocket frames {type, data}, in the order its
  executor sends them: whole rows again on every change, identical task rows repeated, agents'
  totals only in the final frames, agent cost "$0.0137", task cost in whole cents, datetimes
  without offset or with Z, and the final task row `failed` by the naive/aware datetime bug.
- `orchestr8_stream`: bare bus events: execution.queued, workflow.started (epoch ms),
  execution.started, step.* (step.completed/failed without executionId), errors {name,
  message}, steps that start and never end, cancellation as execution.cancelled alone.

The expectations are computed here from the events, never with the exporter's code.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

START = 1_764_600_000.0  # 2025-12-01T14:40:00Z
TOKEN_KEYS = ("input", "output", "cache_read", "cache_creation")


@dataclass
class Expected:
    cost_nano_by_role: Counter[str] = field(default_factory=Counter)
    tokens_by_type: Counter[str] = field(default_factory=Counter)
    agents_by_role: Counter[str] = field(default_factory=Counter)
    tasks_by_status: Counter[str] = field(default_factory=Counter)
    tasks_submitted: int = 0
    runs_by_status: Counter[str] = field(default_factory=Counter)
    runs_started: int = 0
    steps_by_status: Counter[str] = field(default_factory=Counter)
    step_errors: Counter[str] = field(default_factory=Counter)
    error_logs: int = 0
    ignored: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __iadd__(self, other: Expected) -> Expected:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self


@dataclass
class SourceStream:
    events: list[dict[str, Any]]
    expected: Expected


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _nano(amount: str | float) -> int:
    return int(Decimal(str(amount) if isinstance(amount, str) else repr(amount)) * 10**9)


def _iso(seconds: float, suffix: str = "+00:00") -> str:
    text = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat(
        timespec="microseconds")
    return text + suffix


def _usage(rng: random.Random) -> dict[str, int]:
    return {"input": rng.randint(3, 400), "output": rng.randint(200, 9000),
            "cache_read": rng.randint(0, 250_000), "cache_creation": rng.randint(0, 30_000)}


def monitor_stream(seed: int = 7, agents: int = 40) -> SourceStream:
    """What `follow_metrics_collector` forwards from `MetricsCollector.events`."""
    rng, clock = random.Random(seed), START
    events: list[dict[str, Any]] = []
    expected = Expected()
    roles = ("analyst", "planner", "builder", "tester", "reviewer")
    for index in range(agents):
        agent_id, role = _uuid(rng), roles[index % len(roles)]
        clock += rng.uniform(0.5, 3)
        events.append({"timestamp": _iso(clock), "type": "agent_created", "data": {
            "agent_id": agent_id, "name": f"{role.capitalize()} Agent", "role": role}})
        expected.agents_by_role[role.upper()] += 1
        if index % 4 == 0:  # only when user code calls update_agent_status
            events.append({"timestamp": _iso(clock + 0.1), "type": "status_change", "data": {
                "agent_id": agent_id, "old_status": "created", "new_status": "running"}})
        if index % 9 == 0:  # parallel mode, a callback that raised
            events.append({"timestamp": _iso(clock + 0.2), "type": "error", "data": {
                "agent_id": agent_id, "error": "'ORCHESTRATOR' is not a valid AgentRole"}})
            expected.error_logs += 1
        failed = index % 7 == 3  # failed before its ResultMessage: no tokens, no cost
        usage = dict.fromkeys(TOKEN_KEYS, 0) if failed else _usage(rng)
        cost = 0.0 if failed else round(rng.uniform(0.01, 0.9), 8)
        clock += rng.uniform(20, 200)
        metrics = {
            "agent_id": agent_id, "total_tokens": sum(usage.values()),
            "input_tokens": usage["input"], "output_tokens": usage["output"],
            "cache_creation_input_tokens": usage["cache_creation"],
            "cache_read_input_tokens": usage["cache_read"], "total_cost": cost,
            "tool_calls": rng.randint(0, 30), "messages_sent": 1, "files_read": ["/w/a.py"],
            "files_written": [], "execution_time_seconds": rng.uniform(5, 300),
            "created_at": _iso(clock - 100), "updated_at": _iso(clock - 1)}
        events.append({"timestamp": _iso(clock), "type": "agent_deleted",
                       "data": {"agent_id": agent_id, "metrics": metrics}})
        expected.cost_nano_by_role[role.upper()] += _nano(cost)
        for key, count in usage.items():
            expected.tokens_by_type[key] += count
    return SourceStream(events, expected)


def _task_row(task_id: str, created: float, **fields: Any) -> dict[str, Any]:
    row = {"description": "Add input validation to add()", "task_type": "bug_fix",
           "id": task_id, "status": "pending", "created_at": _iso(created, ""),
           "updated_at": _iso(created, ""), "completed_at": None, "workflow": [],
           "current_step": None, "complexity": "simple", "include_analyst": "auto",
           "working_directory": "/home/u/proj", "total_cost": 0, "duration_seconds": 0,
           "result": None, "error": None, "metadata": {}}
    row.update(fields)
    return {"type": "task_update", "data": row}


def _agent_row(agent_id: str, role: str, task_id: str, created: float, updated: float,
               status: str, usage: dict[str, int] | None = None,
               cost: str = "$0.00") -> dict[str, Any]:
    usage = usage or dict.fromkeys(TOKEN_KEYS, 0)
    return {"type": "agent_update", "data": {
        "role": role, "custom_instructions": f"{role.capitalize()} Agent", "id": agent_id,
        "status": status, "task_id": task_id, "created_at": _iso(created, ""),
        "updated_at": _iso(updated, ""), "completed_at": None,
        "total_input_tokens": usage["input"], "total_output_tokens": usage["output"],
        "cache_creation_tokens": usage["cache_creation"],
        "cache_read_tokens": usage["cache_read"], "total_cost": cost, "metadata": {}}}


def dashboard_stream(seed: int = 11, tasks: int = 12) -> SourceStream:
    """The frames of the sample dashboard's executor for `tasks` tasks, one after another."""
    rng, clock = random.Random(seed), START + 10_000
    events: list[dict[str, Any]] = []
    expected = Expected()
    plans = (["BUILDER", "TESTER"], ["ANALYST", "PLANNER", "BUILDER", "REVIEWER"],
             ["BUILDER"], ["PLANNER", "BUILDER", "TESTER"])
    for index in range(tasks):
        task_id, created = _uuid(rng), clock
        workflow = plans[index % len(plans)]
        events.append(_task_row(task_id, created))
        expected.tasks_submitted += 1
        clock += 0.5
        events.append(_task_row(task_id, created, status="in_progress",
                                updated_at=_iso(clock, "Z")))
        clock += 5
        running = _task_row(task_id, created, status="in_progress", workflow=workflow,
                            updated_at=_iso(clock, "Z"))
        events.append(running)
        agents = []
        for position, role in enumerate(workflow):
            agent_id, born = _uuid(rng), clock + 0.1
            failed = (index + position) % 5 == 4
            events.append(_agent_row(agent_id, role, task_id, born, born, "idle"))
            events.append(_agent_row(agent_id, role, task_id, born, born + 0.01, "active"))
            # agent_started sends the task row again; with no UPDATE it is the same row
            events.append({**running, "data": {**running["data"], "current_step": 0}})
            clock += rng.uniform(10, 90)
            if failed:
                events.append(_agent_row(agent_id, role, task_id, born, clock, "failed"))
            agents.append((agent_id, role, born, failed))
            expected.agents_by_role[role] += 1
        clock += 1
        cents = 0
        for agent_id, role, born, failed in agents:
            usage = dict.fromkeys(TOKEN_KEYS, 0) if failed else _usage(rng)
            estimate = usage["input"] / 1e6 * 3 + usage["output"] / 1e6 * 15
            cost = f"${estimate:.4f}"
            cents += int(estimate * 100)
            events.append(_agent_row(agent_id, role, task_id, born, clock,
                                     "failed" if failed else "completed", usage, cost))
            expected.cost_nano_by_role[role] += _nano(cost[1:])
            for key, count in usage.items():
                expected.tokens_by_type[key] += count
        clock += 0.2
        if index % 3 == 2:  # the end the code intends (an aware created_at)
            events.append(_task_row(
                task_id, created, status="completed", workflow=workflow, current_step=0,
                created_at=_iso(created, "Z"), updated_at=_iso(clock, "Z"),
                completed_at=_iso(clock, "Z"), total_cost=cents,
                duration_seconds=int(clock - created),
                result=f"Task completed successfully with {len(workflow)} agents"))
            expected.tasks_by_status["completed"] += 1
        else:  # what SQLite really gives: naive minus aware raises, the task ends failed
            events.append(_task_row(
                task_id, created, status="failed", workflow=workflow, current_step=0,
                updated_at=_iso(clock, "Z"),
                error="can't subtract offset-naive and offset-aware datetimes"))
            expected.tasks_by_status["failed"] += 1
        clock += rng.uniform(5, 60)
    return SourceStream(events, expected)


def orchestr8_stream(seed: int = 5, executions: int = 15) -> SourceStream:
    """Executions one after another, as listeners of the BoundedEventBus receive them."""
    rng, clock = random.Random(seed), START + 20_000
    events: list[dict[str, Any]] = []
    expected = Expected()
    for index in range(executions):
        execution, workflow = _uuid(rng), ("wf-release", "wf-review")[index % 2]
        clock += rng.uniform(1, 30)
        events += [{"type": "execution.queued", "executionId": execution, "workflowId": workflow},
                   {"type": "workflow.started", "workflowId": workflow,
                    "timestamp": int(clock * 1000)},
                   {"type": "execution.started", "executionId": execution}]
        expected.runs_started += 1
        outcome = ("completed", "failed", "completed", "cancelled", "continued")[index % 5]
        for step in ("s1", "s2", "s3"):
            events.append({"type": "step.started", "stepId": step, "executionId": execution})
            if outcome in ("failed", "continued") and step == "s2":
                name = "TIMEOUT" if outcome == "failed" else "RETRYABLE"
                events.append({"type": "retry.attempted", "stepId": step, "attempt": 1,
                               "delay": 840})
                expected.ignored[("orchestr8", "retry.attempted")] += 1
                events.append({"type": "step.failed", "stepId": step, "retryable": True,
                               "error": {"name": name,
                                         "message": "Operation timed out after 30000ms"}})
                expected.steps_by_status["failed"] += 1
                expected.step_errors[name] += 1
                if outcome == "failed":
                    break  # fail-fast: later levels are skipped without any event
                continue
            if outcome == "cancelled" and step == "s2":
                # an agent that throws CANCELLED: started, no end; the run closes it
                expected.steps_by_status["cancelled"] += 1
                break
            if outcome == "continued" and step == "s3":
                # its dependency failed under onError 'continue': started, never ended
                expected.steps_by_status["skipped"] += 1
                continue
            events.append({"type": "step.completed", "stepId": step,
                           "output": {"result": f"{step} done", "tokens": rng.randint(1, 99)}})
            expected.steps_by_status["completed"] += 1
        if outcome == "failed":
            events.append({"type": "workflow.failed", "workflowId": workflow,
                           "error": {"name": "TIMEOUT"}})  # JSON.stringify lost the message
            expected.runs_by_status["failed"] += 1
        elif outcome == "cancelled":
            events.append({"type": "execution.cancelled", "executionId": execution,
                           "reason": "User requested cancellation"})
            expected.runs_by_status["cancelled"] += 1
        else:  # onError 'continue' ends completed, though a step failed
            events.append({"type": "workflow.completed", "workflowId": workflow,
                           "duration": rng.randint(1000, 90_000)})
            expected.runs_by_status["completed"] += 1
        if index == 4:
            events.append({"type": "circuitBreaker.opened", "key": f"{workflow}:s2",
                           "failures": 3})
            expected.ignored[("orchestr8", "circuitBreaker.opened")] += 1
    return SourceStream(events, expected)


def mixed_stream() -> SourceStream:
    """All three sources interleaved (each in its own order), as one forwarder would mix them."""
    streams = [monitor_stream(), dashboard_stream(), orchestr8_stream()]
    rng = random.Random(3)
    queues = [list(stream.events) for stream in streams]
    events: list[dict[str, Any]] = []
    while any(queues):
        queue = rng.choice([queue for queue in queues if queue])
        events.append(queue.pop(0))
    expected = Expected()
    for stream in streams:
        expected += stream.expected
    return SourceStream(events, expected)
