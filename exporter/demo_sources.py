"""The demo fleet's share in the real orchestrators' own shapes (docs/integrations.md).

Beside its canonical events, the demo runs:

- a Python orchestrator (jeffjacobsen/orchestrator) whose tasks arrive as its sample dashboard's
  WebSocket frames (whole rows again on every change, agent cost as "$0.0137"), with its
  MetricsCollector's `agent_created` / `agent_deleted` entries for the same agents (lower-case
  roles, the billed totals), so both sources describe each agent and its totals count once;
- an @orchestr8 engine whose executions arrive as its bus's bare events (`step.completed`
  without `executionId`, `workflow.started` in epoch milliseconds, errors `{name, message}`,
  `retry.attempted`, cancellation as `execution.cancelled` alone).

Its draws come from a random generator of its own, so the rest of the fleet (and each
scenario's timing) is the same with or without it. It never fails a task or a run: the alerts
of the normal fleet stay quiet.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

Emit = Callable[[dict[str, Any]], None]
Schedule = Callable[[float, Callable[[], object]], None]

PYTHON_TASK_EVERY: Final = (60.0, 120.0)  # seconds between two tasks
BUS_RUN_EVERY: Final = (45.0, 90.0)
BUS_WORKFLOW: Final = "nightly-digest"
BUS_STEPS: Final = ("collect", "summarise", "publish")
_PLANS: Final = (("BUILDER", "TESTER"), ("ANALYST", "BUILDER", "REVIEWER"), ("PLANNER", "BUILDER"))
# Per million tokens: the dashboard's own estimate (input, output), ignoring cache tokens.
_ESTIMATE: Final = (3.0, 15.0)
# The billed prices of claude-sonnet-4-5 (input, output, cache read, cache write) per million.
_BILLED: Final = (3.0, 15.0, 0.3, 3.75)


def _iso(seconds: float, suffix: str = "") -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat() + suffix


@dataclass(slots=True)
class _PythonTask:
    task_id: str
    created: float
    plan: tuple[str, ...]
    agents: list[dict[str, Any]] = field(default_factory=list)


class RealSources:
    """Schedules the two real orchestrators' events on the demo's clock."""

    def __init__(self, *, seed: int, tag: str, now: Callable[[], float], at: Schedule,
                 emit: Emit) -> None:
        self._random = random.Random(f"real-sources/{seed}")
        self._tag = tag
        self._now = now
        self._at = at
        self._emit = emit
        self._tasks: dict[str, _PythonTask] = {}
        self._run: str | None = None  # one execution at a time: the bus names no run on ends
        self._runs = 0

    def begin(self) -> None:
        self._at(3.0, self._python_task)
        self._at(4.0, self._bus_run)

    def shutdown(self) -> None:
        """End what is in flight: the tasks fail (their agents with them), the run is cancelled."""
        for task in list(self._tasks.values()):
            self._end_python_task(task, failed=True)
        if self._run is not None:
            self._emit({"type": "execution.cancelled", "executionId": self._run,
                        "reason": "User requested cancellation"})
            self._run = None

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    # The Python orchestrator: dashboard frames and MetricsCollector entries.

    def _python_task(self) -> None:
        self._at(self._random.uniform(*PYTHON_TASK_EVERY), self._python_task)
        task = _PythonTask(self._uuid(), self._now(), self._random.choice(_PLANS))
        self._tasks[task.task_id] = task
        self._emit(self._task_row(task, "pending"))
        self._at(0.5, lambda: self._emit(self._task_row(task, "in_progress")))
        self._at(4.0, lambda: self._plan(task))

    def _plan(self, task: _PythonTask) -> None:
        if task.task_id not in self._tasks:
            return
        self._emit(self._task_row(task, "in_progress", planned=True))
        for position, role in enumerate(task.plan):
            self._at(1.0 + position * self._random.uniform(8, 20),
                     partial(self._start_agent, task, role))
        self._at(10.0 + len(task.plan) * 22.0, lambda: self._end_python_task(task, failed=False))

    def _start_agent(self, task: _PythonTask, role: str) -> None:
        if task.task_id not in self._tasks:
            return
        now = self._now()
        agent = {"id": self._uuid(), "role": role, "born": now}
        task.agents.append(agent)
        self._emit({"timestamp": _iso(now, "+00:00"), "type": "agent_created", "data": {
            "agent_id": agent["id"], "name": f"{role.capitalize()} Agent",
            "role": role.lower()}})
        self._emit(self._agent_row(task, agent, "idle"))
        self._emit(self._agent_row(task, agent, "active"))
        self._emit(self._task_row(task, "in_progress", planned=True, step=0))

    def _end_python_task(self, task: _PythonTask, *, failed: bool) -> None:
        if self._tasks.pop(task.task_id, None) is None:
            return
        for agent in task.agents:
            usage = (self._random.randint(5, 300), self._random.randint(300, 4000),
                     self._random.randint(5_000, 120_000), self._random.randint(0, 12_000))
            agent["usage"] = usage
            self._emit(self._agent_row(task, agent, "failed" if failed else "completed"))
            billed = sum(count * price for count, price in zip(usage, _BILLED, strict=True))
            self._emit({"timestamp": _iso(self._now(), "+00:00"), "type": "agent_deleted",
                        "data": {"agent_id": agent["id"], "metrics": {
                            "agent_id": agent["id"], "total_tokens": sum(usage),
                            "input_tokens": usage[0], "output_tokens": usage[1],
                            "cache_read_input_tokens": usage[2],
                            "cache_creation_input_tokens": usage[3],
                            "total_cost": round(billed / 1e6, 8), "tool_calls": 3,
                            "files_read": ["/home/u/proj/app.py"],
                            "files_written": ["/home/u/proj/app.py"]}}})
        self._emit(self._task_row(task, "failed" if failed else "completed", planned=True,
                                  step=0, ended=True))

    def _task_row(self, task: _PythonTask, status: str, *, planned: bool = False,
                  step: int | None = None, ended: bool = False) -> dict[str, Any]:
        now = self._now()
        cents = sum(int(self._estimate(agent) * 100) for agent in task.agents if "usage" in agent)
        return {"type": "task_update", "data": {
            "description": "Add input validation to add()", "task_type": "feature_implementation",
            "id": task.task_id, "status": status, "created_at": _iso(task.created),
            "updated_at": _iso(now, "Z"), "completed_at": _iso(now, "Z") if ended else None,
            "workflow": list(task.plan) if planned else [], "current_step": step,
            "complexity": "simple", "include_analyst": "auto",
            "working_directory": "/home/demo/proj", "total_cost": cents,
            "duration_seconds": int(now - task.created) if ended else 0,
            "result": None, "error": None, "metadata": {}}}

    def _agent_row(self, task: _PythonTask, agent: dict[str, Any],
                   status: str) -> dict[str, Any]:
        usage = agent.get("usage", (0, 0, 0, 0))
        cost = f"${self._estimate(agent):.4f}" if "usage" in agent else "$0.00"
        return {"type": "agent_update", "data": {
            "role": agent["role"], "custom_instructions": f"{agent['role'].capitalize()} Agent",
            "id": agent["id"], "status": status, "task_id": task.task_id,
            "created_at": _iso(agent["born"]), "updated_at": _iso(self._now()),
            "completed_at": None, "total_input_tokens": usage[0],
            "total_output_tokens": usage[1], "cache_creation_tokens": usage[3],
            "cache_read_tokens": usage[2], "total_cost": cost, "metadata": {}}}

    @staticmethod
    def _estimate(agent: dict[str, Any]) -> float:
        usage = agent.get("usage", (0, 0, 0, 0))
        return float(usage[0] / 1e6 * _ESTIMATE[0] + usage[1] / 1e6 * _ESTIMATE[1])

    # @orchestr8: bare bus events, one execution at a time.

    def _bus_run(self) -> None:
        self._at(self._random.uniform(*BUS_RUN_EVERY), self._bus_run)
        if self._run is not None:
            return
        self._runs += 1
        execution = self._run = self._uuid()
        self._emit({"type": "execution.queued", "executionId": execution,
                    "workflowId": BUS_WORKFLOW})
        self._emit({"type": "workflow.started", "workflowId": BUS_WORKFLOW,
                    "timestamp": int(self._now() * 1000)})
        self._emit({"type": "execution.started", "executionId": execution})
        cancel = self._runs % 6 == 0
        self._at(0.2, lambda: self._bus_step(execution, 0, cancel))

    def _bus_step(self, execution: str, index: int, cancel: bool) -> None:
        if self._run != execution:
            return
        step = BUS_STEPS[index]
        self._emit({"type": "step.started", "stepId": step, "executionId": execution})
        if cancel and index == 1:  # started, never ended: the cancellation closes it
            self._at(2.0, lambda: self._end_bus_run(execution, cancelled=True))
            return
        if index == 1 and self._random.random() < 0.5:
            self._at(1.0, lambda: self._emit({"type": "retry.attempted", "stepId": step,
                                             "attempt": 1, "delay": 840}))
        self._at(self._random.uniform(2, 8), lambda: self._bus_step_done(execution, index,
                                                                         cancel))

    def _bus_step_done(self, execution: str, index: int, cancel: bool) -> None:
        if self._run != execution:
            return
        self._emit({"type": "step.completed", "stepId": BUS_STEPS[index],
                    "output": {"items": self._random.randint(1, 40)}})
        if index + 1 < len(BUS_STEPS):
            self._at(0.3, lambda: self._bus_step(execution, index + 1, cancel))
        else:
            self._at(0.1, lambda: self._end_bus_run(execution, cancelled=False))

    def _end_bus_run(self, execution: str, *, cancelled: bool) -> None:
        if self._run != execution:
            return
        self._run = None
        if cancelled:
            self._emit({"type": "execution.cancelled", "executionId": execution,
                        "reason": "User requested cancellation"})
        else:
            self._emit({"type": "workflow.completed", "workflowId": BUS_WORKFLOW,
                        "duration": self._random.randint(8_000, 30_000)})
