"""A seeded, reproducible simulated fleet that drives the exporter like real orchestrators do.

`DemoFleet` is a discrete-event simulation: tasks of several types (with and without ANALYST)
whose agents take turns (usage with cache tokens, a context window that fills) and call tools,
and @orchestr8-style workflow runs whose steps fail, retry, are skipped or cancelled. Events come
in both dialects of docs/events.md. The same seed, start time and sequence of `step(now)` calls
give the same events, ids included; the events of a span of time do not depend on how it is cut
into ticks.

The normal fleet stays below every alert threshold of prometheus/rules/alerts.yml: failures are
capped per sliding window (`_Governor`), a context is compacted in the turn it would pass 80%,
the fleet starts warm (tasks and workflow runs already in progress) so its spend is steady and
runs end from the first minute, and the budgets of `DEMO_CONFIG_YAML` have headroom at the
default rate. Each scenario then produces exactly the condition one alert checks; see
`SCENARIOS` and docs/client.md.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
import random
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Final

from exporter.client import ExporterClient, QueueFullError
from exporter.demo_sources import RealSources
from exporter.events import EVENT_TYPES, validate_batch
from exporter.metrics import format_value
from exporter.pricing import NANO_PER_USD, PriceTable, load_price_table
from exporter.series import label_text
from exporter.settings import Settings
from exporter.state import FleetState

logger = logging.getLogger(__name__)

DemoEvent = dict[str, object]

SCENARIOS: Final = (
    "budget-overrun", "cost-spike", "stuck-agent", "context-pressure", "failure-burst",
)
# Seconds after the fleet's start when a scenario begins. cost-spike waits longest: the anomaly
# baseline is the median of the last 6 hours of spend, so the spike must stay shorter than the
# normal history before it (OrchestratorCostAnomaly holds for 15 minutes before it fires).
SCENARIO_START_SECONDS: Final = MappingProxyType({
    "budget-overrun": 60.0,
    "cost-spike": 20 * 60.0,
    "stuck-agent": 30.0,
    "context-pressure": 30.0,
    "failure-burst": 60.0,
})

CONTEXT_LIMIT_TOKENS: Final = 200_000
RUNAWAY_AGENTS: Final = 24
SPIKE_MODEL: Final = "claude-opus-4-5"
RESEARCH_DAILY_LIMIT_USD: Final = 200.0
FLEET_DAILY_LIMIT_USD: Final = 100_000.0
# Budgets sized for the default rate (20 events/s): the normal fleet spends about a third of
# each; at a higher --rate raise the fleet-wide limits with it. research-daily does not depend on
# the rate (research tasks come every 15 to 25 minutes); budget-overrun's runaway task spends
# 1.5 times it within minutes.
DEMO_CONFIG_YAML: Final = f"""\
# Budgets of the demo fleet (orchestrator-exporter serve --demo; demo --scenario budget-overrun).
budgets:
  - name: fleet-daily
    limit_usd: {FLEET_DAILY_LIMIT_USD:.0f}
    period: day
  - name: fleet-monthly
    limit_usd: {FLEET_DAILY_LIMIT_USD * 30:.0f}
    period: month
  - name: analyst-weekly
    limit_usd: 150000
    period: week
    scope: {{role: ANALYST}}
  - name: research-daily
    limit_usd: {RESEARCH_DAILY_LIMIT_USD:.0f}
    period: day
    scope: {{task_type: research}}
"""

_ROLE_MODELS: Final = MappingProxyType({
    "ANALYST": (("claude-opus-4-5", 5), ("claude-opus-4-5-20251101", 1), ("claude-sonnet-4-5", 3)),
    "PLANNER": (("claude-opus-4-5", 3), ("claude-sonnet-4-5", 4),
                ("claude-sonnet-4-5-20250929", 2)),
    "BUILDER": (("claude-sonnet-4-5", 5), ("claude-sonnet-4-5-20250929", 3),
                ("claude-opus-4-5", 1), ("claude-haiku-4-5", 1)),
    "TESTER": (("claude-haiku-4-5", 4), ("claude-haiku-4-5-20251001", 1),
               ("claude-sonnet-4-5", 3)),
    "REVIEWER": (("claude-sonnet-4-5", 4), ("claude-opus-4-5", 3),
                 ("claude-sonnet-4-5-20250929", 1)),
})


@dataclass(frozen=True, slots=True)
class _Profile:
    """How an agent of a role works: turns, tokens per turn, tools."""

    turns: tuple[int, int]
    output_tokens: tuple[int, int]
    new_tokens: tuple[int, int]  # messages and tool results added to the context per turn
    tool_calls: tuple[int, int]  # per turn
    tools: tuple[tuple[str, int], ...]


_PROFILES: Final = MappingProxyType({
    "ANALYST": _Profile((4, 9), (800, 3000), (3000, 12000), (1, 3),
                        (("Read", 4), ("Grep", 3), ("Glob", 1), ("WebSearch", 2),
                         ("WebFetch", 2))),
    "PLANNER": _Profile((3, 6), (600, 2500), (1500, 6000), (0, 2),
                        (("Read", 4), ("Grep", 2), ("Glob", 1), ("TodoWrite", 2))),
    "BUILDER": _Profile((6, 16), (300, 4000), (1500, 9000), (1, 3),
                        (("Read", 5), ("Edit", 5), ("Write", 1), ("Bash", 4), ("Grep", 2),
                         ("Glob", 1))),
    "TESTER": _Profile((3, 8), (200, 1200), (2000, 8000), (1, 2),
                       (("Bash", 6), ("Read", 3), ("Grep", 1))),
    "REVIEWER": _Profile((2, 5), (300, 1500), (3000, 10000), (1, 3),
                         (("Read", 6), ("Grep", 3), ("Bash", 1))),
})


@dataclass(frozen=True, slots=True)
class _Tool:
    median_seconds: float
    spread: float  # sigma of the log-normal duration
    error_probability: float
    error_types: tuple[str, ...]


_TOOLS: Final = MappingProxyType({
    "Read": _Tool(0.08, 0.6, 0.02, ("FileNotFound",)),
    "Grep": _Tool(0.3, 0.8, 0.01, ("InvalidPattern",)),
    "Glob": _Tool(0.1, 0.6, 0.005, ("InvalidPattern",)),
    "Edit": _Tool(0.15, 0.5, 0.04, ("StringNotFound",)),
    "Write": _Tool(0.12, 0.5, 0.01, ("PermissionDenied",)),
    "Bash": _Tool(3.0, 1.1, 0.08, ("NonZeroExit", "CommandTimeout")),
    "WebSearch": _Tool(2.0, 0.5, 0.03, ("SearchTimeout",)),
    "WebFetch": _Tool(1.5, 0.7, 0.06, ("HTTPError",)),
    "TodoWrite": _Tool(0.02, 0.3, 0.0, ()),
})

# task type: (weight, share of complex tasks). research is not drawn here: it has its own
# steady cadence so the research-daily budget does not depend on the rate.
_TASK_TYPES: Final = (
    ("feature_implementation", 4, 0.6),
    ("bug_fix", 4, 0.25),
    ("refactoring", 2, 0.5),
    ("documentation", 2, 0.1),
)
_TASK_ERRORS: Final = MappingProxyType({
    "ANALYST": ("Timeout",), "PLANNER": ("Timeout",), "BUILDER": ("BuildFailure", "AgentError"),
    "TESTER": ("TestFailure",), "REVIEWER": ("ReviewRejected",),
})


@dataclass(frozen=True, slots=True)
class _StepSpec:
    name: str
    agent: str  # the agent kind that runs it
    role: str | None  # None: a step without a model (a script)
    skip_probability: float = 0.0


_WORKFLOWS: Final = MappingProxyType({
    "ci-pipeline": (
        _StepSpec("checkout", "git-agent", None), _StepSpec("lint", "lint-agent", "TESTER"),
        _StepSpec("unit-tests", "test-runner", "TESTER"),
        _StepSpec("build", "build-agent", None),
        _StepSpec("publish-preview", "release-agent", None, skip_probability=0.5),
    ),
    "code-review": (
        _StepSpec("fetch-diff", "git-agent", None),
        _StepSpec("analyze", "code-analyst", "ANALYST"),
        _StepSpec("review", "code-reviewer", "REVIEWER"),
        _StepSpec("summarize", "writer", "REVIEWER", skip_probability=0.2),
    ),
    "release": (
        _StepSpec("changelog", "writer", "PLANNER"),
        _StepSpec("version-bump", "release-agent", None),
        _StepSpec("build", "build-agent", None),
        _StepSpec("smoke-tests", "test-runner", "TESTER"),
        _StepSpec("publish", "release-agent", None),
    ),
    "incident-triage": (
        _StepSpec("collect-logs", "ops-agent", None),
        _StepSpec("diagnose", "code-analyst", "ANALYST"),
        _StepSpec("propose-fix", "planner", "PLANNER"),
        _StepSpec("notify", "notifier", None, skip_probability=0.3),
    ),
    "docs-sync": (
        _StepSpec("scan", "doc-scanner", "ANALYST"), _StepSpec("write", "writer", "BUILDER"),
        _StepSpec("review", "code-reviewer", "REVIEWER"),
    ),
})
_STEP_ERRORS: Final = ("TimeoutError", "ToolExecutionError", "RateLimitError", "ValidationError")
MAX_STEP_ATTEMPTS: Final = 3

# Mean events of one task and one workflow run (measured over many seeds); arrivals are set
# from them so that `rate` is the mean number of events per second.
_EVENTS_PER_TASK: Final = 88.0
_EVENTS_PER_RUN: Final = 40.0
_TASK_SHARE: Final = 0.72
_RUN_SHARE: Final = 0.27
_METRICS_INTERVAL: Final = 15.0
_TASK_SECONDS: Final = 500.0  # mean time from submission to end
_RUN_SECONDS: Final = 130.0  # mean time from a run's start to its end

# Caps of the normal fleet per sliding window, each below the threshold of an alert and over a
# window 20% longer than the alert's, so Prometheus never counts more in its own window.
_ERRORS_PER_TYPE: Final = (4, 1080.0)  # OrchestratorErrorRateRising: >= 5 in 15m
_FAILED_RUNS_PER_WORKFLOW: Final = (2, 1080.0)  # OrchestratorWorkflowRunsFailing: >= 3 in 15m
_RETRIES_PER_STEP: Final = (4, 1080.0)  # OrchestratorStepRetriedRepeatedly: >= 5 in 15m
_FAILED_TASKS_PER_TYPE: Final = (2, 2160.0)  # OrchestratorTaskFailureRatioHigh: > 25% of >= 10
_COMPACT_ABOVE: Final = 0.8  # OrchestratorAgentContextWindowHigh: > 80% for 5m

BURST_ERROR_TYPE: Final = "UpstreamUnavailable"

# camelCase spellings, from the contract: a field's first alias (agentId, inputTokens, stepName).
_CAMEL: Final = MappingProxyType({
    spec.name: spec.aliases[0]
    for specs in EVENT_TYPES.values() for spec in specs if spec.aliases
})
_MONITOR_NAMES: Final = MappingProxyType({
    "agent.status_changed": "status_changed", "agent.tool_call": "tool_call",
})


_DEMO_FILES: Final = ("src/api.py", "src/core.py", "src/db.py", "tests/test_api.py",
                      "README.md", "docs/usage.md")


def _demo_file(agent_id: str, tool: str) -> str | None:
    """The file a Read, Edit or Write call of the demo names, from the agent's id."""
    if tool not in ("Read", "Edit", "Write"):
        return None
    index = sum(map(ord, agent_id + tool)) % len(_DEMO_FILES)
    return "/home/demo/proj/" + _DEMO_FILES[index]


@dataclass(slots=True)
class _Agent:
    agent_id: str
    role: str
    model: str
    dialect: str
    turns_left: int
    on_done: Callable[[_Agent, str | None], None]  # (agent, error type or None)
    context: int = 0
    fail_after_turns: int | None = None
    error_type: str = ""
    active: bool = True
    kind: str = "normal"  # normal | runaway | pressure | stuck
    quick: bool = False
    started: bool = False
    task_type: str = "none"
    spent_nano: int = 0


@dataclass(slots=True)
class _Task:
    task_id: str
    task_type: str
    dialect: str
    stages: list[list[str]]
    agents: list[_Agent] = field(default_factory=list)
    team: list[_Agent] = field(default_factory=list)  # the current stage's agents
    running: int = 0
    fail_stage: int | None = None
    cancel_stage: int | None = None
    stage: int = 0
    quick: bool = False  # the opening's tasks: one or two short turns per agent
    ended: bool = False


@dataclass(slots=True)
class _Run:
    run_id: str
    workflow: str
    dialect: str
    steps: tuple[_StepSpec, ...]
    index: int = 0
    attempt: int = 1
    agent: _Agent | None = None
    fail_step: int | None = None
    fail_attempts: int = 0  # attempts of fail_step that fail (MAX_STEP_ATTEMPTS: the run fails)
    cancel_step: int | None = None
    error_type: str = ""
    quick: bool = False
    ended: bool = False


_Cap = tuple[tuple[str, ...], tuple[int, float], int]  # key, (limit, window seconds), count


class _Governor:
    """Sliding-window caps on the normal fleet's failures."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, ...], deque[float]] = {}

    def allow(self, now: float, *caps: _Cap) -> bool:
        """Record `count` failures under every key, unless that would exceed one of the caps."""
        windows = []
        for key, (limit, window), count in caps:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) + count > limit:
                return False
            windows.append((hits, count))
        for hits, count in windows:
            hits.extend([now] * count)
        return True


class DemoFleet:
    """A simulated fleet; `step(now)` returns the events of the time since the last call.

    `rate` is the mean number of events per second of the normal fleet. `scenario` (one of
    SCENARIOS) starts `scenario_start` seconds after `start_time` (default: the first `now`);
    `scenario_start` defaults to SCENARIO_START_SECONDS. Ids of events, agents, tasks and runs
    are derived from the seed, the source and the start time, so a restarted demo never
    collides with an earlier one in the exporter's ledger.

    `load(now)`, if given, scales the arrivals of tasks, research tasks and workflow runs (1: as
    `rate` says). A fleet that is not `live` replays the past: it sends no `metrics.update`
    snapshots (they describe the moment they are sent) and none of the real orchestrators'
    shapes (their cadence is their own, and they would triple the events of a quiet history).
    """

    def __init__(
        self,
        *,
        seed: int = 42,
        rate: float = 20.0,
        scenario: str | None = None,
        source: str = "demo",
        start_time: float | None = None,
        scenario_start: float | None = None,
        load: Callable[[float], float] | None = None,
        live: bool = True,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        if scenario is not None and scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        self.seed = seed
        self.rate = rate
        self.scenario = scenario
        self.source = source
        self.start_time = start_time
        if scenario_start is None:
            scenario_start = SCENARIO_START_SECONDS[scenario] if scenario else 0.0
        self.scenario_start = scenario_start
        self.load = load
        self.live = live
        self._random = random.Random(seed)
        self._prices: PriceTable = load_price_table()
        self._governor = _Governor()
        self._queue: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._serial = itertools.count(1)
        self._foreign_serial = itertools.count(1)
        self._out: list[DemoEvent] = []
        self._now = 0.0
        self._clock: float | None = None  # simulated up to here
        self._tag = ""
        self._tasks: dict[str, _Task] = {}
        self._runs: dict[str, _Run] = {}
        self._agents: dict[str, _Agent] = {}
        self._spent_nano = 0
        self._spike = False
        self._burst = False
        self._stopped = False
        self._real: RealSources | None = None

    # Public API.

    def step(self, now: float) -> list[DemoEvent]:
        """The events from the previous call (or the start) up to `now`, in time order."""
        if self._stopped:
            return []
        if self._clock is None:
            self._begin(now if self.start_time is None else self.start_time)
        assert self._clock is not None
        if now <= self._clock:
            return []
        while self._queue and self._queue[0][0] <= now:
            when, _, action = heapq.heappop(self._queue)
            self._now = when
            action()
        self._clock = now
        events, self._out = self._out, []
        return events

    def shutdown(self, now: float) -> list[DemoEvent]:
        """End everything in flight as cancelled and delete its agents; later steps are empty.

        So a stopped demo leaves no agent `running` in the exporter (it would look stuck).
        """
        events = self.step(now)
        self._now = max(self._now, now)
        if self._real is not None:
            self._real.shutdown()
        for task in list(self._tasks.values()):
            self._end_task(task, "cancelled")
        for run in list(self._runs.values()):
            self._end_run(run, "cancelled")
        for agent in list(self._agents.values()):
            self._finish_agent(agent, "cancelled")
            self._delete_agent(agent)
        self._queue.clear()
        self._stopped = True
        events.extend(self._out)
        self._out = []
        return events

    @property
    def spent_usd(self) -> float:
        """What the fleet has spent so far, at the exporter's list prices."""
        return self._spent_nano / NANO_PER_USD

    @property
    def live_agents(self) -> int:
        return len(self._agents)

    # The clock and the event envelope.

    def _at(self, delay: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._queue, (self._now + max(delay, 0.0), next(self._order), action))

    def _begin(self, start: float) -> None:
        self._clock = self._now = start
        digest = hashlib.blake2b(f"{self.source}/{self.seed}/{start!r}".encode(), digest_size=3)
        self._tag = digest.hexdigest()
        self._at(1.0, self._arrive_task)
        self._at(2.0, self._arrive_run)
        self._at(8.0, self._research_task)
        if self.live:
            self._at(5.0, self._metrics_update)
            self._real = RealSources(seed=self.seed, tag=self._tag, now=lambda: self._now,
                                     at=self._at, emit=self._emit_foreign)
            self._real.begin()
        self._at(20.0, partial(self._log, "critical", "Claude API overloaded (529); new agents "
                               "paused for 5 s", "dotted"))
        self._opening()
        self._warm_start()
        self._warm_runs()
        if self.scenario is not None:
            self._at(self.scenario_start, self._start_scenario)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{self._tag}-{next(self._serial)}"

    def _emit(self, event_type: str, dialect: str, fields: dict[str, object],
              workflow: str | None = None) -> None:
        timestamp = round(self._now, 3)
        event: DemoEvent
        if dialect == "orchestr8":
            event = _orchestr8(event_type, fields, workflow, timestamp)
        elif dialect == "monitor":
            name = _MONITOR_NAMES.get(event_type, event_type.replace(".", "_"))
            event = {"type": name, "timestamp": timestamp,
                     **{_CAMEL.get(key, key): value for key, value in fields.items()}}
        else:
            event = {"type": event_type, "timestamp": timestamp, **fields}
        event["id"] = f"{self.source}-{self._tag}-{next(self._serial)}"
        event["source"] = self.source
        self._out.append(event)

    def _emit_foreign(self, event: DemoEvent) -> None:
        """A real orchestrator's own shape, with an id and a time as the forwarders add them."""
        event.setdefault("timestamp", _iso(round(self._now, 3)))
        event["id"] = f"{self.source}-{self._tag}-r{next(self._foreign_serial)}"
        event["source"] = self.source
        self._out.append(event)

    def _log(self, level: str, message: str, dialect: str, *, workflow: str | None = None,
             **refs: object) -> None:
        self._emit("log.entry", dialect, {"level": level, "message": message, **refs},
                   workflow=workflow)

    # Random draws.

    def _pick(self, weighted: tuple[tuple[str, int], ...]) -> str:
        names = [name for name, _ in weighted]
        return self._random.choices(names, [weight for _, weight in weighted])[0]

    def _between(self, bounds: tuple[int, int]) -> int:
        return self._random.randint(*bounds)

    def _chance(self, probability: float) -> bool:
        return self._random.random() < probability

    def _dialect(self) -> str:
        return "monitor" if self._chance(0.5) else "dotted"

    # Background: arrivals, snapshots.

    def _load(self) -> float:
        return 1.0 if self.load is None else self.load(self._now)

    def _arrive_task(self) -> None:
        self._submit_task(self._pick(tuple((name, weight) for name, weight, _ in _TASK_TYPES)))
        rate = self.rate * self._load() * _TASK_SHARE / _EVENTS_PER_TASK
        self._at(self._random.expovariate(rate), self._arrive_task)

    def _arrive_run(self) -> None:
        self._start_run(self._random.choice(sorted(_WORKFLOWS)))
        rate = self.rate * self._load() * _RUN_SHARE / _EVENTS_PER_RUN
        self._at(self._random.expovariate(rate), self._arrive_run)

    def _research_task(self) -> None:
        self._submit_task("research", complexity="complex")
        self._at(self._random.uniform(15 * 60, 25 * 60) / self._load(), self._research_task)

    def _metrics_update(self) -> None:
        running = sum(1 for task in self._tasks.values() if task.running)
        snapshot: dict[str, object] = {
            "active_agents": len(self._agents), "active_tasks": len(self._tasks),
            "running_tasks": running, "active_workflow_runs": len(self._runs),
            "spent_usd": round(self.spent_usd, 6),
        }
        self._emit("metrics.update", self._random.choice(("dotted", "monitor", "orchestr8")),
                   {"metrics": snapshot})
        self._at(_METRICS_INTERVAL, self._metrics_update)

    # Tasks.

    def _submit_task(self, task_type: str, *, complexity: str | None = None,
                     analyst: bool | None = None, parallel: bool | None = None,
                     outcome: str | None = None, quick: bool = False,
                     autostart: bool = True) -> _Task:
        share_complex = next((share for name, _, share in _TASK_TYPES if name == task_type), 0.9)
        if complexity is None:
            complexity = "complex" if self._chance(share_complex) else "simple"
        if analyst is None:  # the orchestrator adds an ANALYST to complex tasks, or when forced
            analyst = complexity == "complex" or self._chance(0.05)
        if parallel is None:
            parallel = complexity == "complex" and self._chance(0.3)
        task = _Task(self._new_id("task"), task_type, self._dialect(),
                     _stages(task_type, complexity, analyst, parallel, self._random),
                     quick=quick)
        self._plan_outcome(task, outcome)
        self._tasks[task.task_id] = task
        self._emit("task.submitted", task.dialect, {
            "task_id": task.task_id, "task_type": task_type, "complexity": complexity,
            "analyst": analyst, "mode": "parallel" if parallel else "sequential"})
        self._log("info", f"Task {task.task_id} submitted: {task_type}, {complexity}, ANALYST "
                  f"{'included' if analyst else 'skipped'}", task.dialect, task_id=task.task_id)
        if autostart:
            self._at(self._random.uniform(0.5, 3.0), partial(self._start_task, task))
        return task

    def _plan_outcome(self, task: _Task, outcome: str | None) -> None:
        if outcome is None:
            draw = self._random.random()
            failure = 0.35 if self._burst else 0.05
            outcome = "failed" if draw < failure else "cancelled" if draw < failure + 0.03 \
                else "completed"
        if outcome == "failed":
            task.fail_stage = self._random.randrange(len(task.stages))
        elif outcome == "cancelled":
            task.cancel_stage = self._random.randrange(len(task.stages))

    def _start_task(self, task: _Task, stage: int = 0) -> None:
        """Start a task; at a later `stage` (warm start) as if its earlier stages were done."""
        if task.ended:
            return
        self._emit("task.started", task.dialect, {"task_id": task.task_id})
        if len(task.stages) > 2:  # a planned team: every agent exists, pending, from the start
            for roles in task.stages[stage:]:
                for role in roles:
                    agent = self._create_agent(role, task.dialect, task=task)
                    self._emit("agent.status_changed", agent.dialect,
                               {"agent_id": agent.agent_id, "status": "pending"})
        task.stage = stage
        self._start_stage(task, resumed=stage > 0)

    def _start_stage(self, task: _Task, *, resumed: bool = False) -> None:
        roles = task.stages[task.stage]
        existing = [agent for agent in task.agents if not agent.started]
        team: list[_Agent] = []
        for role in roles:
            agent = next((agent for agent in existing if agent.role == role
                          and agent not in team), None)
            team.append(agent or self._create_agent(role, task.dialect, task=task))
        failing = task.stage == task.fail_stage
        for index, agent in enumerate(team):
            if task.quick:
                agent.quick, agent.turns_left = True, self._random.randint(1, 2)
            elif resumed:  # mid-way through its work: part of its context already filled
                agent.turns_left = self._random.randint(1, agent.turns_left)
                agent.context = int(CONTEXT_LIMIT_TOKENS * self._random.uniform(0.1, 0.5))
            if failing and index == 0:
                agent.fail_after_turns = self._random.randint(1, agent.turns_left)
                agent.error_type = (BURST_ERROR_TYPE if self._burst else
                                    self._random.choice(_TASK_ERRORS[agent.role]))
            self._run_agent(agent)
        task.team, task.running = team, len(team)
        if task.stage == task.cancel_stage:
            delay = self._random.uniform(0.5, 2.0) if task.quick else self._random.uniform(3, 20)
            self._at(delay, partial(self._cancel_task, task))

    def _task_agent_done(self, task: _Task, agent: _Agent, error_type: str | None) -> None:
        if task.ended:
            return
        if error_type is not None:
            self._end_task(task, "failed", error_type=error_type, culprit=agent)
            return
        task.running -= 1
        if task.running > 0:  # its parallel siblings still work
            self._emit("agent.status_changed", agent.dialect,
                       {"agent_id": agent.agent_id, "status": "idle"})
            return
        for member in task.team:
            self._finish_agent(member, "completed")
        task.stage += 1
        if task.stage < len(task.stages):
            self._start_stage(task)
        else:
            self._end_task(task, "completed")

    def _cancel_task(self, task: _Task) -> None:
        if not task.ended:
            self._log("warning", f"Task {task.task_id} cancelled by its submitter", task.dialect,
                      task_id=task.task_id)
            self._end_task(task, "cancelled")

    def _end_task(self, task: _Task, status: str, *, error_type: str = "",
                  culprit: _Agent | None = None) -> None:
        task.ended = True
        self._tasks.pop(task.task_id, None)
        fields: dict[str, object] = {"task_id": task.task_id}
        if status == "failed":
            fields.update(error=f"{culprit.role if culprit else 'agent'} failed: {error_type}",
                          error_type=error_type)
        for agent in task.agents:
            agent_status = "failed" if agent is culprit else \
                "completed" if status == "completed" else "cancelled"
            self._finish_agent(agent, agent_status)
        self._emit(f"task.{status}", task.dialect, fields)
        level = "error" if status == "failed" else "info"
        self._log(level, f"Task {task.task_id} ({task.task_type}) {status}"
                  + (f": {error_type}" if error_type else ""), task.dialect, task_id=task.task_id)
        for agent in task.agents:
            self._at(self._random.uniform(2.0, 15.0), partial(self._delete_agent, agent))

    # Agents.

    def _create_agent(self, role: str, dialect: str, *, task: _Task | None = None,
                      model: str | None = None, kind: str = "normal",
                      on_done: Callable[[_Agent, str | None], None] | None = None) -> _Agent:
        profile = _PROFILES[role]
        if on_done is None:
            assert task is not None
            on_done = partial(self._task_agent_done, task)
        model = SPIKE_MODEL if self._spike else model or self._pick(_ROLE_MODELS[role])
        agent = _Agent(self._new_id(role.lower()), role, model,
                       dialect, self._between(profile.turns), on_done, kind=kind)
        self._agents[agent.agent_id] = agent
        fields: dict[str, object] = {"agent_id": agent.agent_id, "role": role,
                                     "model": agent.model,
                                     "context_limit_tokens": CONTEXT_LIMIT_TOKENS}
        if task is not None:
            task.agents.append(agent)
            agent.task_type = task.task_type
            fields["task_id"] = task.task_id
        self._emit("agent.created", dialect, fields)
        return agent

    def _run_agent(self, agent: _Agent) -> None:
        agent.started = True
        self._emit("agent.status_changed", agent.dialect,
                   {"agent_id": agent.agent_id, "status": "running"})
        self._at(self._random.uniform(0.3, 1.5), partial(self._model_call, agent))

    def _model_call(self, agent: _Agent) -> None:
        """One turn: the model answers after a latency that grows with its output."""
        if not agent.active:
            return
        output = self._between(_PROFILES[agent.role].output_tokens)
        if agent.kind == "runaway":
            output = self._random.randint(800, 2000)
        speed = 400.0 if agent.quick else self._random.uniform(60.0, 120.0)  # tokens per second
        self._at(1.0 + output / speed, partial(self._answer, agent, output))

    def _answer(self, agent: _Agent, output: int) -> None:
        """The turn's usage, then the tools the model asked for."""
        if not agent.active:
            return
        self._usage(agent, output)
        profile = _PROFILES[agent.role]
        tools = [self._pick(profile.tools) for _ in range(self._between(profile.tool_calls))]
        self._next_tool(agent, tools)

    def _usage(self, agent: _Agent, output: int) -> None:
        """Emit the usage of a turn: cache reads of the context so far, its growth written."""
        new = self._between(_PROFILES[agent.role].new_tokens)
        if agent.kind == "runaway":  # re-reads a whole corpus each turn and never hits the cache
            new, agent.context = 0, self._random.randint(130_000, 145_000)
        if agent.context == 0:  # first turn: system prompt and task written to the cache
            new += self._random.randint(6000, 18000)
        uncached = self._random.randint(50, 800)
        cached, creation = agent.context, new
        if agent.kind == "runaway" or self._spike or (cached and self._chance(0.08)):
            cached, creation = 0, agent.context + new  # cache miss: the whole prompt re-written
        agent.context += new + uncached + output
        self._fit_context(agent)
        if self._spike:
            agent.model = SPIKE_MODEL
        usage: dict[str, object] = {
            "agent_id": agent.agent_id, "model": agent.model, "input_tokens": uncached,
            "output_tokens": output, "cache_read_tokens": cached,
            "cache_creation_tokens": creation, "context_tokens": agent.context,
        }
        price = self._prices.lookup(agent.model)
        nano = price.cost_nano(uncached, output, cached, creation) if price else 0
        self._spent_nano += nano
        agent.spent_nano += nano
        if self._chance(0.2):  # some orchestrators report their own cost
            usage["cost_usd"] = round(nano / NANO_PER_USD, 9)
        self._emit("agent.usage", agent.dialect, usage)

    def _fit_context(self, agent: _Agent) -> None:
        limit = CONTEXT_LIMIT_TOKENS
        if agent.kind == "pressure":
            agent.context = min(agent.context, int(limit * self._random.uniform(0.955, 0.99)))
        elif agent.context > limit * _COMPACT_ABOVE:
            # Compacted in the same turn, so no agent of the normal fleet reports above 80%.
            self._log("warning", f"Agent {agent.agent_id} context at "
                      f"{agent.context / limit:.0%}; compacting", agent.dialect,
                      agent_id=agent.agent_id)
            agent.context = int(limit * self._random.uniform(0.25, 0.4))

    def _next_tool(self, agent: _Agent, tools: list[str]) -> None:
        if not agent.active:
            return
        if not tools:
            self._end_turn(agent)
            return
        tool = _TOOLS[tools[0]]
        seconds = min(120.0, tool.median_seconds * math.exp(self._random.gauss(0, tool.spread)))
        waiting = seconds > 5 and self._chance(0.5)
        if waiting:
            self._emit("agent.status_changed", agent.dialect,
                       {"agent_id": agent.agent_id, "status": "waiting"})
        self._at(seconds, partial(self._tool_done, agent, tools, seconds, waiting))

    def _tool_done(self, agent: _Agent, tools: list[str], seconds: float,
                   waiting: bool) -> None:
        if not agent.active:
            return
        name, tool = tools[0], _TOOLS[tools[0]]
        call: dict[str, object] = {"agent_id": agent.agent_id, "tool": name,
                                   "duration_seconds": round(seconds, 3), "outcome": "success"}
        error_type = self._tool_error(tool)
        if error_type:
            call.update(outcome="error", error_type=error_type)
        path = _demo_file(agent.agent_id, name) if agent.dialect != "orchestr8" else None
        if path is not None:
            call["file_path"] = path  # the read API's files of the agent
        self._emit("agent.tool_call", agent.dialect, call)
        if path is not None and name != "Read" and not error_type:
            # What Claude Code reports as lines of code (agent.activity): drawn from the call's
            # length, not the random stream, so the rest of the demo stays as it was.
            self._emit("agent.activity", "canonical", {
                "agent_id": agent.agent_id, "lines_added": 1 + int(seconds * 40),
                "lines_removed": int(seconds * 15)})
        if waiting:
            self._emit("agent.status_changed", agent.dialect,
                       {"agent_id": agent.agent_id, "status": "running"})
        if self._chance(0.03):
            self._log("debug", f"{name} by {agent.agent_id} took {seconds:.2f}s", agent.dialect,
                      agent_id=agent.agent_id)
        self._next_tool(agent, tools[1:])

    def _tool_error(self, tool: _Tool) -> str:
        if self._burst and tool.error_types and self._chance(0.05):
            return BURST_ERROR_TYPE
        if not tool.error_types or not self._chance(tool.error_probability):
            return ""
        error_type = self._random.choice(tool.error_types)
        return error_type if self._allow_error(error_type) else ""

    def _end_turn(self, agent: _Agent) -> None:
        agent.turns_left -= 1
        if agent.kind != "normal":
            self._at(self._random.uniform(0.5, 2.0), partial(self._model_call, agent))
            return
        if agent.fail_after_turns is not None:
            agent.fail_after_turns -= 1
            failed_task: _Cap = (("task-failed", agent.task_type), _FAILED_TASKS_PER_TYPE, 1)
            if agent.fail_after_turns <= 0 and self._allow_error(agent.error_type, failed_task):
                agent.on_done(agent, agent.error_type)
                return
        if agent.turns_left > 0:
            self._at(self._random.uniform(0.2, 2.0), partial(self._model_call, agent))
        else:
            agent.on_done(agent, None)

    def _finish_agent(self, agent: _Agent, status: str) -> None:
        if agent.active:
            agent.active = False
            self._emit("agent.status_changed", agent.dialect,
                       {"agent_id": agent.agent_id, "status": status})

    def _delete_agent(self, agent: _Agent) -> None:
        if self._agents.pop(agent.agent_id, None) is not None:
            self._emit("agent.deleted", agent.dialect, {"agent_id": agent.agent_id})

    # Failure caps.

    def _allow_error(self, error_type: str, *caps: _Cap, errors: int = 1) -> bool:
        """Whether a failure may happen now; `errors` is how many error events it makes."""
        if error_type == BURST_ERROR_TYPE:
            return True
        own = (("error", error_type), _ERRORS_PER_TYPE, errors)
        return self._governor.allow(self._now, own, *caps)

    # Workflow runs (@orchestr8).

    def _start_run(self, workflow: str, *, outcome: str | None = None,
                   fail_step: str | None = None, fail_attempts: int = 0,
                   error_type: str | None = None, quick: bool = False,
                   from_step: int = 0) -> _Run:
        """Start a run; at step `from_step` (warm start) as if the steps before it were done."""
        steps = _WORKFLOWS[workflow]
        run = _Run(self._new_id("run"), workflow, "orchestr8" if self._chance(0.75) else "dotted",
                   steps, index=from_step, quick=quick)
        self._plan_run(run, outcome, fail_step, fail_attempts, error_type)
        self._runs[run.run_id] = run
        self._emit("workflow.started", run.dialect,
                   {"run_id": run.run_id, "workflow": workflow,
                    "steps": [spec.name for spec in steps]}, workflow=workflow)
        self._log("info", f"Workflow {workflow} started (run {run.run_id})", run.dialect,
                  run_id=run.run_id, workflow=workflow)
        self._at(self._random.uniform(0.2, 1.0), partial(self._start_step, run))
        return run

    def _plan_run(self, run: _Run, outcome: str | None, fail_step: str | None,
                  fail_attempts: int, error_type: str | None) -> None:
        names = [spec.name for spec in run.steps]
        if fail_step is not None:
            run.fail_step, run.fail_attempts = names.index(fail_step), fail_attempts
        elif outcome is None and self._chance(0.6 if self._burst else 0.08):
            run.fail_step = self._random.randrange(len(names))
            run.fail_attempts = MAX_STEP_ATTEMPTS if self._chance(0.4) else \
                self._random.randint(1, MAX_STEP_ATTEMPTS - 1)
        run.error_type = error_type or (BURST_ERROR_TYPE if self._burst
                                        else self._random.choice(_STEP_ERRORS))
        if outcome == "cancelled":
            run.cancel_step = 1
        elif outcome is None and self._chance(0.03):
            run.cancel_step = self._random.randrange(len(names))

    def _start_step(self, run: _Run) -> None:
        if run.ended:
            return
        if run.index >= len(run.steps):
            self._end_run(run, "completed")
            return
        spec = run.steps[run.index]
        optional = spec.skip_probability > 0 and (run.quick or self._chance(spec.skip_probability))
        if run.attempt == 1 and run.index != run.fail_step and optional:
            self._emit_step("step.skipped", run, {})
            run.index += 1
            self._at(0.1, partial(self._start_step, run))
            return
        run.agent = None
        if spec.role is not None:
            run.agent = self._create_agent(spec.role, self._dialect(),
                                           on_done=partial(self._step_agent_done, run))
            run.agent.turns_left = 1 if run.quick else self._random.randint(1, 4)
            run.agent.quick = run.quick
        self._emit_step("step.started", run, {})
        if run.index == run.cancel_step:
            self._at(self._random.uniform(1.0, 10.0), partial(self._end_run, run, "cancelled"))
        if run.agent is not None:
            self._run_agent(run.agent)
        else:
            seconds = math.exp(self._random.gauss(math.log(1.0 if run.quick else 4.0), 0.8))
            self._at(seconds, partial(self._step_outcome, run))

    def _emit_step(self, event_type: str, run: _Run, extra: dict[str, object]) -> None:
        spec = run.steps[run.index]
        fields: dict[str, object] = {"run_id": run.run_id, "step_id": f"{spec.name}",
                                     "step": spec.name, "agent": spec.agent}
        if run.agent is not None:
            fields["agent_id"] = run.agent.agent_id
        self._emit(event_type, run.dialect, {**fields, **extra}, workflow=run.workflow)

    def _step_outcome(self, run: _Run) -> None:
        """The current step attempt ends: completed, or failed (retried or failing the run)."""
        if run.ended:
            return
        fails = run.index == run.fail_step and run.attempt <= run.fail_attempts
        if fails and not self._allow_step_failure(run):
            fails = False
        agent = run.agent
        if not fails:
            if agent is not None:
                self._finish_agent(agent, "completed")
                self._at(self._random.uniform(1.0, 5.0), partial(self._delete_agent, agent))
            self._emit_step("step.completed", run, {})
            run.index, run.attempt = run.index + 1, 1
            self._at(self._random.uniform(0.1, 1.0), partial(self._start_step, run))
            return
        message = f"{run.steps[run.index].name}: {run.error_type}"
        if agent is not None:
            self._finish_agent(agent, "failed")
            self._at(self._random.uniform(1.0, 5.0), partial(self._delete_agent, agent))
        self._emit_step("step.failed", run, {"error": message, "error_type": run.error_type})
        if run.attempt >= MAX_STEP_ATTEMPTS:
            self._end_run(run, "failed")
            return
        run.attempt += 1
        self._log("warning", f"Retrying step {message} (attempt {run.attempt} of "
                  f"{MAX_STEP_ATTEMPTS})", run.dialect, run_id=run.run_id, workflow=run.workflow)
        run.agent = None
        self._emit_step("step.retried", run, {})
        self._at(self._random.uniform(1.0, 4.0) * run.attempt, partial(self._start_step, run))

    def _step_agent_done(self, run: _Run, agent: _Agent, error_type: str | None) -> None:
        self._step_outcome(run)

    def _allow_step_failure(self, run: _Run) -> bool:
        if run.error_type == BURST_ERROR_TYPE:
            return True
        if run.attempt >= MAX_STEP_ATTEMPTS:  # step.failed and workflow.failed: two errors
            failed_run: _Cap = (("run-failed", run.workflow), _FAILED_RUNS_PER_WORKFLOW, 1)
            return self._allow_error(run.error_type, failed_run, errors=2)
        retry: _Cap = (("retry", run.workflow, run.steps[run.index].name), _RETRIES_PER_STEP, 1)
        return self._allow_error(run.error_type, retry)

    def _end_run(self, run: _Run, status: str) -> None:
        if run.ended:
            return
        run.ended = True
        self._runs.pop(run.run_id, None)
        if status == "cancelled" and run.index < len(run.steps):
            self._emit_step("step.cancelled", run, {})
        if run.agent is not None and run.agent.active:
            self._finish_agent(run.agent, status)
            self._at(self._random.uniform(1.0, 5.0), partial(self._delete_agent, run.agent))
        fields: dict[str, object] = {"run_id": run.run_id}
        if status == "failed":
            fields.update(error=f"step {run.steps[run.index].name} failed "
                          f"{MAX_STEP_ATTEMPTS} times", error_type=run.error_type)
        self._emit(f"workflow.{status}", run.dialect, fields, workflow=run.workflow)
        self._log("error" if status == "failed" else "info",
                  f"Workflow {run.workflow} {status} (run {run.run_id})", run.dialect,
                  run_id=run.run_id, workflow=run.workflow)

    def _warm_start(self) -> None:
        """Tasks already in progress when the demo starts, so spend is steady from the start.

        Without them the spend rate would climb for ten minutes while the fleet fills, and
        against that low start a normal fleet could look like a cost anomaly.
        """
        in_flight = round(self.rate * _TASK_SHARE / _EVENTS_PER_TASK * _TASK_SECONDS)
        for index in range(in_flight):
            task = self._submit_task(self._pick(tuple((name, weight)
                                                      for name, weight, _ in _TASK_TYPES)),
                                     autostart=False)
            stage = self._random.randrange(len(task.stages))
            self._at(0.2 + 20.0 * index / max(in_flight, 1),
                     partial(self._start_task, task, stage))

    def _warm_runs(self) -> None:
        """Runs of every workflow already in progress, each resumed at a step drawn at random.

        Otherwise the first runs, started with the demo, would end after two minutes and more:
        a run's duration needs two ends of the same workflow to show in a rate().
        """
        workflows = sorted(_WORKFLOWS)
        in_flight = round(self.rate * _RUN_SHARE / _EVENTS_PER_RUN * _RUN_SECONDS)
        for index in range(in_flight):
            workflow = workflows[index % len(workflows)]
            step = self._random.randrange(len(_WORKFLOWS[workflow]))
            self._at(0.3 + 20.0 * index / max(in_flight, 1),
                     partial(self._start_run, workflow, from_step=step))

    # The first two minutes show every outcome, so every dashboard panel has data at once.

    def _opening(self) -> None:
        self._at(0.5, partial(self._submit_task, "documentation", complexity="simple",
                              analyst=False, outcome="completed", quick=True))
        self._at(1.5, partial(self._start_run, "ci-pipeline", fail_step="unit-tests",
                              fail_attempts=1, error_type="TimeoutError", quick=True))
        self._at(3.0, partial(self._submit_task, "bug_fix", complexity="simple", analyst=False,
                              outcome="failed", quick=True))
        self._at(4.0, partial(self._start_run, "incident-triage", fail_step="diagnose",
                              fail_attempts=MAX_STEP_ATTEMPTS, error_type="RateLimitError",
                              quick=True))
        self._at(5.0, partial(self._submit_task, "refactoring", complexity="simple",
                              analyst=False, outcome="cancelled", quick=True))
        self._at(6.0, partial(self._start_run, "docs-sync", outcome="cancelled", quick=True))
        self._at(7.0, partial(self._submit_task, "feature_implementation", complexity="complex",
                              analyst=True, parallel=True, outcome="completed", quick=True))

    # Scenarios.

    def _start_scenario(self) -> None:
        logger.info("demo scenario %s starts", self.scenario)
        if self.scenario == "cost-spike":
            self._spike = True
            self._log("warning", f"Configuration change: every agent now runs {SPIKE_MODEL} "
                      "with the prompt cache disabled", "dotted")
        elif self.scenario == "failure-burst":
            self._burst = True
            self._release_retry_storm()
        elif self.scenario == "stuck-agent":
            self._stuck_agent()
        elif self.scenario == "context-pressure":
            self._context_pressure()
        elif self.scenario == "budget-overrun":
            self._runaway_research()

    def _stuck_agent(self) -> None:
        """A BUILDER set to running that never sends another event (its Bash never returns)."""
        task = self._submit_task("feature_implementation", complexity="simple", analyst=False,
                                 autostart=False)

        def hang() -> None:
            self._emit("task.started", task.dialect, {"task_id": task.task_id})
            agent = self._create_agent("BUILDER", task.dialect, task=task, kind="stuck")
            self._emit("agent.status_changed", agent.dialect,
                       {"agent_id": agent.agent_id, "status": "running"})
            self._usage(agent, 1200)  # and then nothing: no turn is scheduled

        self._at(1.0, hang)

    def _context_pressure(self) -> None:
        """A REVIEWER of a huge diff whose context climbs past 95% and stays there."""
        task = self._submit_task("refactoring", complexity="simple", analyst=False,
                                 autostart=False)

        def review() -> None:
            self._emit("task.started", task.dialect, {"task_id": task.task_id})
            agent = self._create_agent("REVIEWER", task.dialect, task=task,
                                       model="claude-sonnet-4-5", kind="pressure")
            agent.context = 150_000
            self._run_agent(agent)

        self._at(1.0, review)

    def _runaway_research(self) -> None:
        """A research task fans out into RUNAWAY_AGENTS opus ANALYSTs that re-read their whole
        corpus without the cache each turn, until research-daily is 1.5 times spent (about four
        minutes); the next UTC day it happens again."""
        task = self._submit_task("research", complexity="complex", analyst=True,
                                 autostart=False)

        def start() -> None:
            self._emit("task.started", task.dialect, {"task_id": task.task_id})
            for index in range(RUNAWAY_AGENTS):
                agent = self._create_agent("ANALYST", task.dialect, task=task,
                                           model="claude-opus-4-5", kind="runaway")
                self._at(index * 0.4, partial(self._run_agent, agent))
            self._at(5.0, watch)

        def watch() -> None:
            if task.ended:
                return
            spent = sum(agent.spent_nano for agent in task.agents) / NANO_PER_USD
            if spent < 1.5 * RESEARCH_DAILY_LIMIT_USD:
                self._at(5.0, watch)
                return
            self._log("critical", f"Research task {task.task_id} stopped by an operator after "
                      f"${spent:.2f}", task.dialect, task_id=task.task_id)
            self._end_task(task, "cancelled")
            day = 86_400.0
            self._at((self._now // day + 1) * day + 60.0 - self._now, self._runaway_research)

        self._at(1.0, start)

    def _release_retry_storm(self) -> None:
        """A bot re-runs `release` every 30 s; its build fails on an upstream outage each time,
        and a bug_fix task filed for it fails the same way."""
        self._start_run("release", fail_step="build", fail_attempts=MAX_STEP_ATTEMPTS,
                        error_type=BURST_ERROR_TYPE)
        self._submit_task("bug_fix", complexity="simple", analyst=False, outcome="failed",
                          quick=True)
        if self._chance(0.3):
            self._log("critical", "Package registry unreachable; circuit breaker open",
                      "dotted")
        self._at(30.0, self._release_retry_storm)


def _stages(task_type: str, complexity: str, analyst: bool, parallel: bool,
            draw: random.Random) -> list[list[str]]:
    """Which roles work on a task, stage by stage (a stage's agents work in parallel)."""
    if task_type == "research":
        stages = [["ANALYST"], ["REVIEWER"]]
    elif task_type == "documentation":
        stages = [["BUILDER"], ["REVIEWER"]]
    elif complexity == "complex":
        builders = ["BUILDER"] * (draw.randint(2, 3) if parallel else 1)
        stages = [["PLANNER"], builders, ["TESTER"], ["REVIEWER"]]
    else:
        stages = [["BUILDER"], ["TESTER"]]
    if analyst and stages[0] != ["ANALYST"]:
        stages.insert(0, ["ANALYST"])
    return stages


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(round(timestamp, 3), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _orchestr8(event_type: str, fields: dict[str, object], workflow: str | None,
               timestamp: float) -> DemoEvent:
    """The @orchestr8 envelope: workflowId = workflow name, executionId = run id, data = rest."""
    data = {_CAMEL.get(key, key): value for key, value in fields.items()
            if key not in ("run_id", "step_id", "workflow")}
    event: DemoEvent = {"type": event_type, "timestamp": _iso(timestamp)}
    if workflow is not None:
        event["workflowId"] = workflow
    if "run_id" in fields:
        event["executionId"] = fields["run_id"]
    if "step_id" in fields:
        event["stepId"] = fields["step_id"]
    event["data"] = data
    return event



# The history: the fleet of the past days, replayed at a simulated clock (serve --demo-history).

# A quiet fleet, so that a day takes a fraction of a second to simulate and ingest (about 8,000
# events on a busy day), not the 1.7 million of the live demo's default rate.
HISTORY_RATE: Final = 0.05
# The counters are written as a scrape every 15 minutes would have read them: enough samples for
# the History rules' increase over an hour, and a file of tens of megabytes for a month.
HISTORY_SCRAPE_SECONDS: Final = 900.0
_HISTORY_BATCH_EVENTS: Final = 5_000
# The default exporter's cap, so the history's labels are those the live exporter shows.
_LABEL_VALUE_LIMIT: Final = Settings.model_fields["label_value_limit"].default
_DAY_SECONDS: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class HistoryLoad:
    """How busy the fleet of the past is at a time, from 0 to 1: busier in working hours (08:00
    to 18:00 UTC) and on weekdays, and growing, half as busy 60 days before `end`, so the
    History dashboard has a day, a week and a trend to show."""

    end: float

    def __call__(self, timestamp: float) -> float:
        moment = datetime.fromtimestamp(timestamp, UTC)
        hours = 1.0 if 8 <= moment.hour < 18 else 0.3
        weekday = 1.0 if moment.weekday() < 5 else 0.35
        return hours * weekday * math.pow(0.5, (self.end - timestamp) / (60 * _DAY_SECONDS))


def backfill_history(
    sink: Callable[[list[DemoEvent]], object],
    *,
    days: float,
    seed: int,
    end: float,
    openmetrics: Path | None = None,
) -> int:
    """Replay the `days` days before `end` of a quiet fleet (HISTORY_RATE, at HistoryLoad) and
    pass its events to `sink` in batches, its wind-down included: nothing of it stays running.

    With `openmetrics`, also write there the counters the History rules read, as a scrape
    every HISTORY_SCRAPE_SECONDS would have found them in an exporter that counted these events
    alone, for `promtool tsdb create-blocks-from openmetrics`. The file appears whole. Returns
    the number of events.
    """
    start = end - days * _DAY_SECONDS
    fleet = DemoFleet(seed=seed, rate=HISTORY_RATE, start_time=start, load=HistoryLoad(end),
                      live=False)
    scrapes = _ScrapeHistory(openmetrics) if openmetrics is not None else None
    pending: list[DemoEvent] = []
    sent = 0
    moment = start
    while moment < end:
        moment = min(moment + HISTORY_SCRAPE_SECONDS, end)
        events = fleet.step(moment) if moment < end else fleet.shutdown(end)
        if scrapes is not None:
            scrapes.record(events, moment)
        pending.extend(events)
        if pending and (len(pending) >= _HISTORY_BATCH_EVENTS or moment >= end):
            sink(pending)
            sent, pending = sent + len(pending), []
    if scrapes is not None:
        scrapes.finish()
    return sent


class _ScrapeHistory:
    """Counts the events in a fleet state of its own and keeps, timestamped, what the exporter's
    /metrics would show at each moment of the counters the History rules read (spend, agents
    created, tasks ended, task cost), as OpenMetrics. The task-cost histogram goes without its
    buckets, which those rules do not read: its sum and count make a summary without quantiles,
    and the file a third of the size.

    OpenMetrics wants each family whole, while the moments come one after the other: each
    family gathers in a file of its own in a temporary directory until `finish` joins them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = FleetState(prices=load_price_table(), budgets=(),
                                 label_value_limit=_LABEL_VALUE_LIMIT)
        families = self._state.families
        self._counters = (families.cost, families.agents_created, families.tasks)
        self._summaries = (families.task_cost,)
        self._directory = tempfile.TemporaryDirectory(prefix="demo-history-")
        self._parts: dict[str, Path] = {}
        for family in self._counters:
            # An OpenMetrics counter family is named without its samples' _total.
            self._part(family.name, f"{family.name.removesuffix('_total')} counter")
        for summary in self._summaries:
            self._part(summary.name, f"{summary.name} summary")

    def _part(self, name: str, type_line: str) -> None:
        part = self._parts[name] = Path(self._directory.name) / name
        part.write_text(f"# TYPE {type_line}\n", encoding="utf-8")

    def record(self, raws: list[DemoEvent], moment: float) -> None:
        events, problems = validate_batch(list(raws), moment)
        if problems:
            raise ValueError(f"the demo made invalid events: {problems[:3]}")
        self._state.apply_all(events)
        stamp = f" {moment:.3f}\n"
        for counter in self._counters:
            with self._parts[counter.name].open("a", encoding="utf-8") as part:
                part.writelines(
                    f"{counter.name}{label_text(counter.labelnames, labels)} "
                    f"{format_value(value / counter.scale if counter.scale != 1 else value)}"
                    f"{stamp}" for labels, value in counter.values.items())
        for summary in self._summaries:
            with self._parts[summary.name].open("a", encoding="utf-8") as part:
                for labels, histogram in summary.values.items():
                    text = label_text(summary.labelnames, labels)
                    part.write(f"{summary.name}_sum{text} {format_value(histogram.sum)}{stamp}"
                               f"{summary.name}_count{text} {histogram.count}{stamp}")

    def finish(self) -> None:
        partial_path = self.path.with_name(self.path.name + ".partial")
        with self._directory, partial_path.open("w", encoding="utf-8") as out:
            for part in self._parts.values():
                with part.open(encoding="utf-8") as source:
                    shutil.copyfileobj(source, out)
            out.write("# EOF\n")
        partial_path.replace(self.path)


def run_demo(
    sink: Callable[[list[DemoEvent]], object],
    *,
    seed: int,
    rate: float,
    scenario: str | None,
    stop: threading.Event,
    tick_seconds: float = 1.0,
    clock: Callable[[], float] = time.time,
) -> None:
    """Call `sink` with each tick's events until `stop` is set, then with the wind-down.

    Ticks with no events are not passed on. The wind-down (`DemoFleet.shutdown`) cancels what is
    in flight so no agent is left `running`; a sink that fails then is only logged.
    """
    fleet = DemoFleet(seed=seed, rate=rate, scenario=scenario, start_time=clock())
    while not stop.is_set():
        events = fleet.step(clock())
        if events:
            sink(events)
        stop.wait(tick_seconds)
    try:
        events = fleet.shutdown(clock())
        if events:
            sink(events)
    except Exception as error:  # the exporter may be stopping too
        logger.warning("demo wind-down not delivered: %s", error)


def main_demo(url: str, token: str | None, *, seed: int, rate: float, scenario: str | None,
              duration: float | None) -> int:
    """`orchestrator-exporter demo`: drive the exporter at `url` until `duration` or Ctrl-C.

    Stops at once when the exporter refuses events (a wrong token) or stays unreachable until
    the client's queue is full. Returns 0 when every event was acknowledged, else 1.
    """
    if logging.getLogger("httpx").level == logging.NOTSET:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    stop = threading.Event()
    client = ExporterClient(url, token, flush_interval=0.25)
    failures: list[str] = []

    def sink(events: list[DemoEvent]) -> None:
        for event in events:
            client.emit(event)

    def drive() -> None:
        try:
            run_demo(sink, seed=seed, rate=rate, scenario=scenario, stop=stop)
        except QueueFullError as error:
            failures.append(str(error))
            stop.set()

    logger.info("demo fleet (seed %d, %.1f events/s, scenario %s) -> %s", seed, rate,
                scenario or "none", url)
    worker = threading.Thread(target=drive, name="demo-fleet", daemon=True)
    with _stop_on_sigterm(stop), suppress(KeyboardInterrupt):
        worker.start()
        _watch(client, stop, duration, failures)
    stop.set()
    worker.join()
    delivered = client.close(timeout=30.0)
    logger.info("demo stopped: %d events sent, %d dropped, %d retries", client.sent,
                client.dropped, client.retries)
    for failure in failures:
        logger.error("demo failed: %s", failure)
    return 0 if delivered and not failures and not client.dropped else 1


def _watch(client: ExporterClient, stop: threading.Event, duration: float | None,
           failures: list[str]) -> None:
    """Wait for the end, a refusal or a stop; log progress every minute."""
    began = time.monotonic()
    next_report = began + 60.0
    while not stop.wait(0.1):
        now = time.monotonic()
        if client.dropped:
            failures.append("the exporter refused events (see the log above)")
            return
        if duration is not None and now - began >= duration:
            return
        if now >= next_report:
            logger.info("demo: %d events sent, %d waiting, %d retries", client.sent,
                        client.pending, client.retries)
            next_report += 60.0


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """Turn SIGTERM (docker stop) into a clean stop while active; only the main thread can."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
