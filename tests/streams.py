"""A seeded stream of mixed orchestrator events in both dialects, with its expected totals.

The expectations are computed here from the events themselves, with the prices written out by
hand, never with the exporter's code, so a test comparing them with /metrics checks the exporter.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Nano-dollars per token (USD per million tokens x 1000): input, output, cache read, cache write.
PRICES = {
    "claude-sonnet-4-5-20250929": (3000, 15000, 300, 3750),
    "claude-haiku-4-5": (1000, 5000, 100, 1250),
    "claude-opus-4-5": (5000, 25000, 500, 6250),
}
UNPRICED_MODEL = "acme-model-1"
ROLES = ("ANALYST", "PLANNER", "BUILDER", "TESTER", "REVIEWER")
TOOLS = ("Read", "Edit", "Bash", "Grep")


@dataclass
class Expected:
    cost_nano_by_role: Counter[str] = field(default_factory=Counter)
    tokens_by_type: Counter[str] = field(default_factory=Counter)
    tool_calls_by_outcome: Counter[str] = field(default_factory=Counter)
    tasks_by_status: Counter[str] = field(default_factory=Counter)
    runs_by_status: Counter[str] = field(default_factory=Counter)
    steps_by_status: Counter[str] = field(default_factory=Counter)
    logs_by_level: Counter[str] = field(default_factory=Counter)
    unpriced_events: int = 0
    agents_created: int = 0
    unique_events: int = 0


@dataclass
class Stream:
    batches: list[list[dict[str, Any]]]
    expected: Expected
    resent: int

    @property
    def all_unique(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for batch in self.batches:
            for event in batch:
                seen.setdefault(event["id"], event)
        return list(seen.values())


class _Builder:
    def __init__(self, seed: int, start: float) -> None:
        self.rng = random.Random(seed)
        self.clock = start
        self.events: list[dict[str, Any]] = []
        self.expected = Expected()
        self.agents: list[tuple[str, str, str]] = []  # id, role, model

    def emit(self, event: dict[str, Any]) -> None:
        self.clock += 0.05
        event["id"] = f"evt-{len(self.events):06d}"
        # Half the events carry RFC 3339 timestamps, half Unix seconds.
        if len(self.events) % 2:
            event["timestamp"] = datetime.fromtimestamp(self.clock, UTC).isoformat()
        else:
            event["timestamp"] = self.clock
        self.events.append(event)

    def camel(self) -> bool:
        return self.rng.random() < 0.5

    def agent(self, index: int, task_id: str) -> None:
        role = ROLES[index % len(ROLES)]
        model = (*PRICES, UNPRICED_MODEL)[index % 4]
        agent_id = f"agent-{index}"
        self.agents.append((agent_id, role, model))
        if self.camel():
            self.emit({"type": "agent_created", "agentId": agent_id, "role": role, "model": model,
                       "taskId": task_id, "contextLimitTokens": 200_000})
        else:
            self.emit({"type": "agent.created", "agent_id": agent_id, "role": role,
                       "model": model, "task_id": task_id, "context_limit_tokens": 200_000})
        self.expected.agents_created += 1

    def usage(self) -> None:
        agent_id, role, model = self.rng.choice(self.agents)
        tokens = [self.rng.randint(0, 5000) for _ in range(4)]
        fields: dict[str, Any] = dict(zip(
            ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"),
            tokens, strict=True))
        if self.rng.random() < 0.3:
            cost = round(self.rng.uniform(0, 0.5), 6)
            fields["cost_usd"] = cost
            nano = int(Decimal(repr(cost)) * 1_000_000_000)
        elif model in PRICES:
            nano = sum(count * price for count, price in zip(tokens, PRICES[model], strict=True))
        else:
            nano = 0
            self.expected.unpriced_events += 1
        self.expected.cost_nano_by_role[role] += nano
        for name, count in zip(("input", "output", "cache_read", "cache_creation"), tokens,
                               strict=True):
            self.expected.tokens_by_type[name] += count
        fields["context_tokens"] = self.rng.randint(1000, 190_000)
        if self.camel():
            camel_names = {"input_tokens": "inputTokens", "output_tokens": "outputTokens",
                           "cache_read_tokens": "cacheReadTokens", "cost_usd": "costUsd",
                           "cache_creation_tokens": "cacheCreationTokens",
                           "context_tokens": "contextTokens"}
            self.emit({"type": "agent_usage", "agentId": agent_id,
                       **{camel_names[key]: value for key, value in fields.items()}})
        else:
            self.emit({"type": "agent.usage", "agent_id": agent_id, **fields})

    def tool_call(self) -> None:
        agent_id = self.rng.choice(self.agents)[0]
        outcome = "error" if self.rng.random() < 0.1 else "success"
        self.expected.tool_calls_by_outcome[outcome] += 1
        self.emit({"type": "tool_call" if self.camel() else "agent.tool_call",
                   "agent_id": agent_id, "tool": self.rng.choice(TOOLS), "outcome": outcome,
                   "duration_seconds": round(self.rng.uniform(0.01, 20), 3)})

    def log(self) -> None:
        level = self.rng.choice(("debug", "info", "warning", "error", "critical"))
        self.expected.logs_by_level[level] += 1
        self.emit({"type": "log_entry" if self.camel() else "log.entry", "level": level,
                   "message": 'tool said "done"\nnext line', "agentId": self.agents[0][0]})

    def task(self, index: int) -> str:
        task_id = f"task-{index}"
        self.emit({"type": "task.submitted", "task_id": task_id,
                   "task_type": ("feature", "bugfix", "docs")[index % 3],
                   "analyst": index % 2 == 0, "complexity": "complex"})
        self.emit({"type": "task_started", "taskId": task_id})
        return task_id

    def end_task(self, task_id: str) -> None:
        status = self.rng.choice(("completed", "completed", "failed", "cancelled"))
        self.expected.tasks_by_status[status] += 1
        self.emit({"type": f"task.{status}", "task_id": task_id})

    def workflow_run(self, index: int) -> None:
        run_id = f"run-{index}"
        steps = ["plan", "build", "test"]
        self.emit({"type": "workflow.started", "workflowId": "release", "executionId": run_id,
                   "data": {"steps": steps}})
        for step in steps:
            self.emit({"type": "step.started", "workflowId": "release", "executionId": run_id,
                       "stepId": step, "data": {"agentId": self.agents[index][0],
                                                "agent": "BUILDER"}})
            if self.rng.random() < 0.2:
                self.emit({"type": "step.retried", "workflowId": "release",
                           "executionId": run_id, "stepId": step})
            status = "failed" if self.rng.random() < 0.15 else "completed"
            self.expected.steps_by_status[status] += 1
            self.emit({"type": f"step_{status}", "runId": run_id, "stepId": step,
                       "stepName": step, "errorType": "timeout"})
        self.emit({"type": "metrics.update", "workflowId": "release",
                   "metrics": {"queue_depth": index, "workers": 4}})
        run_status = self.rng.choice(("completed", "failed"))
        self.expected.runs_by_status[run_status] += 1
        self.emit({"type": f"workflow.{run_status}", "workflowId": "release",
                   "executionId": run_id})


def mixed_stream(*, total: int = 10_000, batch_size: int = 500, resend_share: float = 0.05,
                 seed: int = 7, start: float | None = None) -> Stream:
    """`total` unique events in both dialects, batched, with `resend_share` of them sent twice."""
    now = datetime.now(UTC).timestamp()
    builder = _Builder(seed, start if start is not None else now - 3600)
    tasks = [builder.task(index) for index in range(40)]
    for index in range(120):
        builder.agent(index, tasks[index % len(tasks)])
    for index in range(30):
        builder.workflow_run(index)
    actions = (builder.usage, builder.usage, builder.usage, builder.tool_call, builder.log)
    while len(builder.events) < total - len(tasks):
        builder.rng.choice(actions)()
    for task_id in tasks:
        builder.end_task(task_id)
    builder.expected.unique_events = len(builder.events)
    return _batched(builder, batch_size, resend_share)


def _batched(builder: _Builder, batch_size: int, resend_share: float) -> Stream:
    events = builder.events
    rng = builder.rng
    batches: list[list[dict[str, Any]]] = []
    resent = 0
    later_batches = max(1, -(-len(events) // batch_size) - 1)
    target = round(len(events) * resend_share)
    for number, start in enumerate(range(0, len(events), batch_size)):
        batch = list(events[start:start + batch_size])
        if start:
            # Resend some earlier events (as a retrying client would) within later batches.
            share = target // later_batches + (1 if number <= target % later_batches else 0)
            extra = rng.sample(events[:start], share)
            batch.extend(extra)
            resent += len(extra)
        batches.append(batch)
    return Stream(batches=batches, expected=builder.expected, resent=resent)
