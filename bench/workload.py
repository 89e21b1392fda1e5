"""The events the benchmark sends: a realistic fleet, built before any clock starts.

An *episode* is one task of a fleet from submission to end: its workflow run, three steps, an
agent per step with usage and tool calls, log entries; exactly `EPISODE_EVENTS` events, in causal
order. A batch interleaves whole episodes by timestamp, so batches sent over concurrent
connections may be committed in any order without an agent being deleted before it is created.
A quarter of the episodes speak the other dialect (underscore type names, camelCase fields,
RFC 3339 timestamps). Ids are random UUIDs, as orchestrators generate them, so the ledger's id
index is written all over, not appended to.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

import orjson

Event = dict[str, Any]

EPISODE_EVENTS: Final = 50
ROLES: Final = ("PLANNER", "BUILDER", "REVIEWER", "ANALYST")
MODELS: Final = ("claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5")
TASK_TYPES: Final = ("feature", "bugfix", "refactor", "research", "docs")
WORKFLOWS: Final = ("release", "code-review", "triage", "research")
TOOLS: Final = ("read_file", "write_file", "edit", "bash", "grep", "web_fetch")
STEPS: Final = (("plan", "PLANNER"), ("build", "BUILDER"), ("review", "REVIEWER"))
ERROR_TYPES: Final = ("timeout", "rate_limit", "tool_error")
# The share of episodes in the camelCase / underscore-type dialect.
OTHER_DIALECT_SHARE: Final = 0.25
FAILURE_SHARE: Final = 0.1
TOOL_ERROR_SHARE: Final = 0.05

_CAMEL: Final = {
    "agent_id": "agentId", "task_id": "taskId", "run_id": "executionId", "step_id": "stepId",
    "task_type": "taskType", "input_tokens": "inputTokens", "output_tokens": "outputTokens",
    "cache_read_tokens": "cacheReadTokens", "cache_creation_tokens": "cacheCreationTokens",
    "context_tokens": "contextTokens", "context_limit_tokens": "contextLimitTokens",
    "duration_seconds": "durationSeconds", "error_type": "errorType",
}


class _Episode:
    """Writes one episode's events with a running clock."""

    def __init__(self, rng: random.Random, tag: str, number: int, start: float) -> None:
        self.rng = rng
        self.tag = f"{tag}-{number}"
        self.clock = start
        self.events: list[Event] = []

    def emit(self, event_type: str, **fields: Any) -> None:
        self.clock += self.rng.uniform(0.05, 3.0)
        self.events.append({"type": event_type, "id": str(uuid.UUID(
            int=self.rng.getrandbits(128), version=4)), "timestamp": round(self.clock, 3),
            **fields})

    def build(self) -> list[Event]:
        rng, tag = self.rng, self.tag
        task_id, run_id = f"t-{tag}", f"r-{tag}"
        failed = rng.random() < FAILURE_SHARE
        analyst = rng.random() < 0.3
        self.emit("task.submitted", task_id=task_id, task_type=rng.choice(TASK_TYPES),
                  complexity=rng.choice(("simple", "complex")), analyst=analyst,
                  mode=rng.choice(("sequential", "parallel")))
        self.emit("workflow.started", run_id=run_id, workflow=rng.choice(WORKFLOWS),
                  steps=[step for step, _ in STEPS])
        self.emit("task.started", task_id=task_id)
        self.emit("log.entry", level="info", message=f"task {task_id} started", task_id=task_id)
        for index, (step, role) in enumerate(STEPS):
            if step == "review" and analyst:
                role = "ANALYST"
            last_failed = failed and index == len(STEPS) - 1
            self._agent_step(task_id, run_id, f"s{index}", step, role, failed=last_failed)
        if failed:
            self.emit("workflow.failed", run_id=run_id, error="step review failed",
                      error_type="tool_error")
            self.emit("task.failed", task_id=task_id, error="review failed",
                      error_type="tool_error")
        else:
            self.emit("workflow.completed", run_id=run_id)
            self.emit("task.completed", task_id=task_id)
        self.emit("log.entry", level="warning" if failed else "info",
                  message=f"task {task_id} ended", task_id=task_id, run_id=run_id)
        self.emit("metrics.update", metrics={"queue_depth": rng.randint(0, 50),
                                             "active_agents": rng.randint(1, 1_000)})
        return self.events

    def _agent_step(self, task_id: str, run_id: str, step_id: str, step: str, role: str, *,
                    failed: bool) -> None:
        rng = self.rng
        agent_id = f"a-{self.tag}-{step_id}"
        model = rng.choice(MODELS)
        step_fields = {"run_id": run_id, "step_id": step_id, "step": step,
                       "agent": role.lower(), "agent_id": agent_id}
        self.emit("agent.created", agent_id=agent_id, role=role, model=model, task_id=task_id,
                  context_limit_tokens=200_000)
        self.emit("agent.status_changed", agent_id=agent_id, status="running")
        self.emit("step.started", **step_fields)
        context = 0
        for _ in range(4):
            input_tokens = rng.randint(500, 20_000)
            context += input_tokens
            self.emit("agent.usage", agent_id=agent_id, model=model, input_tokens=input_tokens,
                      output_tokens=rng.randint(50, 4_000),
                      cache_read_tokens=rng.randint(0, 50_000),
                      cache_creation_tokens=rng.randint(0, 5_000), context_tokens=context)
            tool_failed = rng.random() < TOOL_ERROR_SHARE
            extra = {"error_type": rng.choice(ERROR_TYPES)} if tool_failed else {}
            self.emit("agent.tool_call", agent_id=agent_id, tool=rng.choice(TOOLS),
                      outcome="error" if tool_failed else "success",
                      duration_seconds=round(rng.uniform(0.01, 30.0), 3), **extra)
        if failed:
            self.emit("step.failed", **step_fields, error="review failed", error_type="tool_error")
            self.emit("agent.status_changed", agent_id=agent_id, status="failed")
        else:
            self.emit("step.completed", **step_fields)
            self.emit("agent.status_changed", agent_id=agent_id, status="completed")
        self.emit("agent.deleted", agent_id=agent_id)


def _other_dialect(event: Event) -> Event:
    """The same event as underscore type name, camelCase fields and an RFC 3339 timestamp."""
    converted = {_CAMEL.get(name, name): value for name, value in event.items()}
    converted["type"] = event["type"].replace(".", "_")
    stamp = datetime.fromtimestamp(event["timestamp"], UTC).isoformat(timespec="milliseconds")
    converted["timestamp"] = stamp.replace("+00:00", "Z")
    return converted


def episode(rng: random.Random, tag: str, number: int, start: float) -> list[Event]:
    """One task's life in `EPISODE_EVENTS` events; `tag` keeps names unique across runs."""
    events = _Episode(rng, tag, number, start).build()
    assert len(events) == EPISODE_EVENTS, len(events)
    if rng.random() < OTHER_DIALECT_SHARE:
        return [_other_dialect(event) for event in events]
    return events


def timestamp(event: Event) -> float:
    stamp = event["timestamp"]
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp).timestamp()
    return float(stamp)


def ingest_batches(events: int, batch_size: int, *, seed: int, start: float | None = None,
                   spacing: float = 0.01) -> Iterator[list[Event]]:
    """About `events` events (rounded up to whole batches) in batches of `batch_size`; episode n
    starts at `start + n * spacing` (by default an hour ago, so timestamps are recent and within
    the contract; a simulated clock passes its own)."""
    if batch_size % EPISODE_EVENTS:
        raise ValueError(f"the batch size must be a multiple of {EPISODE_EVENTS}")
    rng = random.Random(seed)
    tag = f"{seed:x}"[:10]
    per_batch = batch_size // EPISODE_EVENTS
    start = time.time() - 3600.0 if start is None else start
    batches = -(-events // batch_size)
    for batch in range(batches):
        numbers = range(batch * per_batch, (batch + 1) * per_batch)
        merged = [event for number in numbers
                  for event in episode(rng, tag, number, start + number * spacing)]
        merged.sort(key=timestamp)  # stable: each episode keeps its causal order
        yield merged


def serialised_batches(events: int, batch_size: int, *,
                       seed: int) -> list[tuple[int, bytes]]:
    """The request bodies of `ingest_batches`, serialised up front, with their event counts."""
    return [(len(batch), orjson.dumps(batch))
            for batch in ingest_batches(events, batch_size, seed=seed)]


def live_fleet(agents: int, *, seed: int, agents_per_task: int = 10) -> list[Event]:
    """Agents created and running with usage and a tool call, in tasks and runs still open."""
    rng = random.Random(seed)
    tag = f"live-{seed:x}"[:15]
    now = time.time() - 600.0
    events: list[Event] = []

    def emit(event_type: str, **fields: Any) -> None:
        events.append({"type": event_type, "id": str(uuid.UUID(int=rng.getrandbits(128),
                                                              version=4)),
                       "timestamp": round(now + len(events) * 0.001, 3), **fields})

    for number in range(agents):
        group = number // agents_per_task
        task_id, run_id = f"t-{tag}-{group}", f"r-{tag}-{group}"
        if number % agents_per_task == 0:
            emit("task.submitted", task_id=task_id, task_type=rng.choice(TASK_TYPES))
            emit("task.started", task_id=task_id)
            emit("workflow.started", run_id=run_id, workflow=rng.choice(WORKFLOWS))
        agent_id, role = f"a-{tag}-{number}", rng.choice(ROLES)
        emit("agent.created", agent_id=agent_id, role=role, model=rng.choice(MODELS),
             task_id=task_id, context_limit_tokens=200_000)
        emit("agent.status_changed", agent_id=agent_id, status="running")
        emit("step.started", run_id=run_id, step_id=f"s{number}", step="build",
             agent=role.lower(), agent_id=agent_id)
        emit("agent.usage", agent_id=agent_id, input_tokens=rng.randint(500, 20_000),
             output_tokens=rng.randint(50, 4_000), cache_read_tokens=rng.randint(0, 50_000),
             context_tokens=rng.randint(1_000, 150_000))
        emit("agent.tool_call", agent_id=agent_id, tool=rng.choice(TOOLS), outcome="success",
             duration_seconds=round(rng.uniform(0.01, 30.0), 3))
    return events


def callback_calls(events: int, *, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """AgentMonitor-style `callback(name, payload)` arguments: underscore names, no ids."""
    rng = random.Random(seed)
    tag = f"cb-{seed:x}"[:13]
    start = time.time() - 3600.0
    calls: list[tuple[str, dict[str, Any]]] = []
    number = 0
    while len(calls) < events:
        for event in episode(rng, tag, number, start + number * 0.01):
            payload = {name: value for name, value in event.items()
                       if name not in ("type", "id")}
            calls.append((event["type"].replace(".", "_"), payload))
        number += 1
    return calls[:events]
