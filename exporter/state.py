"""The fleet as the events describe it: entities, counters and histograms, in memory.

`FleetState.apply` is the only place where an event changes anything. The ledger persists what
changed (`take_changes`) in the same transaction as the events, and `restore` rebuilds the state
from those rows at start, so counters continue exactly where they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

from exporter.budgets import BudgetTracker, epoch_day
from exporter.config import Budget
from exporter.events import TERMINAL_AGENT_STATUSES, TOKEN_TYPES, TOOL_OUTCOMES, Event
from exporter.labels import LabelLimiter, LabelSets
from exporter.pricing import NANO_PER_USD, Price, PriceTable, usd_to_nano
from exporter.series import CounterFamily, Histogram, HistogramFamily, split_key

UNKNOWN: Final = "unknown"
NONE: Final = "none"
UNSPECIFIED: Final = "unspecified"
# Terminal events repeated for a task or run already ended are ignored; the last this many are
# remembered (sources repeat a row within seconds or minutes). Not more: a set reaching its cap
# only after millions of events made memory grow with history (docs/operations.md).
ENDED_MEMORY: Final = 10_000
# Deleted agents remembered for what their sources say late (a final total after the deletion
# arrives seconds or minutes later).
DELETED_AGENT_MEMORY: Final = 10_000
MICROS_PER_SECOND: Final = 1_000_000



@dataclass(slots=True)
class Agent:
    source: str
    agent_id: str
    role: str = UNKNOWN
    model: str = UNKNOWN
    status: str = "pending"
    task_id: str | None = None
    task_type: str = NONE
    workflow: str = NONE
    context_tokens: int = 0
    context_limit: int = 0
    cost_nano: int = 0
    tokens: int = 0
    last_activity: float = 0.0
    created_at: float = 0.0
    deleted: bool = False
    # What is counted so far, by token type: the base that running totals (agent.usage with
    # totals) are compared with.
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    label_text: str | None = field(default=None, compare=False)

    @property
    def live(self) -> bool:
        return not self.deleted and self.status not in TERMINAL_AGENT_STATUSES


@dataclass(slots=True)
class Task:
    source: str
    task_id: str
    task_type: str = UNKNOWN
    complexity: str | None = None
    analyst: bool | None = None
    mode: str | None = None
    status: str = "pending"
    submitted_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    cost_nano: int = 0
    has_analyst_agent: bool = False
    description: str | None = None
    error: str | None = None

    @property
    def analyst_label(self) -> str:
        return "included" if self.analyst or self.has_analyst_agent else "excluded"


@dataclass(slots=True)
class Run:
    source: str
    run_id: str
    workflow: str = UNKNOWN
    status: str = "running"
    started_at: float | None = None
    ended_at: float | None = None
    steps: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Step:
    source: str
    run_id: str
    step_id: str
    step: str = UNKNOWN
    agent: str = UNKNOWN
    agent_id: str | None = None
    status: str = "pending"
    started_at: float | None = None
    ended_at: float | None = None
    retries: int = 0


AgentKey = tuple[str, str]
StepKey = tuple[str, str, str]
DailyKey = tuple[int, str, str, str, str, str]
Labels = tuple[str, ...]

STEP_END_STATUSES: Final = ("completed", "failed", "skipped", "cancelled")


def _usage_series(labels: Labels) -> tuple[Labels, tuple[Labels, ...]]:
    """The cost series and the token series, one per token type."""
    return labels, tuple((*labels, token_type) for token_type in TOKEN_TYPES)


def _outcome_series(labels: Labels) -> tuple[Labels, dict[str, Labels]]:
    return labels, {outcome: (*labels, outcome) for outcome in TOOL_OUTCOMES}


@dataclass(slots=True)
class _StepSeries:
    labels: Labels
    by_status: dict[str, Labels]
    touched: bool = False  # its series exist (at 0 if never increased)


def _step_series(labels: Labels) -> _StepSeries:
    return _StepSeries(labels, {status: (*labels, status) for status in STEP_END_STATUSES})


@dataclass(slots=True)
class Changes:
    """What a batch changed, for the ledger to write in the batch's transaction."""

    counters: dict[str, int]
    histograms: dict[str, Histogram]
    agents: list[Agent]
    tasks: list[Task]
    runs: list[Run]
    steps: list[Step]
    label_values: list[tuple[str, str]]
    # Per day and labels: cost (nano-USD), then tokens by type in TOKEN_TYPES order.
    daily_cost: dict[DailyKey, list[int]]


@dataclass(slots=True)
class Snapshot:
    """What the ledger hands back at start."""

    counters: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)
    deleted_agents: list[Agent] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    ended_tasks: list[tuple[str, str]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    ended_runs: list[tuple[str, str]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    label_values: dict[str, set[str]] = field(default_factory=dict)
    budget_days: dict[str, dict[int, int]] = field(default_factory=dict)
    budget_first_day: int = 0
    applied_seq: int = 0


class Families:
    """Every persisted counter and histogram family of the fleet."""

    def __init__(self) -> None:
        c, h = CounterFamily, HistogramFamily
        usage = ("source", "role", "model", "task_type", "workflow")
        task = ("source", "task_type", "analyst")
        step = ("source", "workflow", "step", "agent")
        self.cost = c("orchestrator_cost_usd_total", "Cost of agent usage in US dollars.", usage,
                      scale=NANO_PER_USD)
        self.tokens = c("orchestrator_tokens_total", "Tokens used, by type: input, output, "
                        "cache_read, cache_creation.", (*usage, "type"))
        self.unpriced = c("orchestrator_unpriced_usage_events_total", "Usage events without "
                          "cost_usd whose model is not in the price table (costed at 0).",
                          ("source", "model"))
        # The audit of a source's own cost: for usage events that carry cost_usd and tokens of a
        # priced model, what the source reported and what the price table makes of the tokens.
        self.cost_reported = c("orchestrator_cost_reported_usd_total", "Cost the source "
                               "reported (cost_usd) on usage events whose model is priced.",
                               ("source", "model"), scale=NANO_PER_USD)
        self.cost_computed = c("orchestrator_cost_computed_usd_total", "Cost the price table "
                               "gives the tokens of those same usage events.",
                               ("source", "model"), scale=NANO_PER_USD)
        self.agents_created = c("orchestrator_agents_created_total", "Agents created.",
                                ("source", "role", "model"))
        self.tasks_submitted = c("orchestrator_tasks_submitted_total", "Tasks submitted.", task)
        self.tasks = c("orchestrator_tasks_total", "Tasks ended, by final status: completed, "
                       "failed, cancelled.", ("source", "task_type", "status", "analyst"))
        self.task_duration = h("orchestrator_task_duration_seconds", "Task duration from start "
                               "(or submission) to end.", ("source", "task_type", "analyst",
                                                           "status"),
                               (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200))
        self.task_cost = h("orchestrator_task_cost_usd", "Cost of the agents' usage attributed "
                           "to a task, observed when it ends.",
                           ("source", "task_type", "analyst", "status"),
                           (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25))
        self.runs_started = c("orchestrator_workflow_runs_started_total",
                              "Workflow runs started.", ("source", "workflow"))
        self.runs = c("orchestrator_workflow_runs_total", "Workflow runs ended, by status: "
                      "completed, failed, cancelled.", ("source", "workflow", "status"))
        self.run_duration = h("orchestrator_workflow_run_duration_seconds",
                              "Workflow run duration.", ("source", "workflow", "status"),
                              (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400))
        self.step_duration = h("orchestrator_step_duration_seconds", "Duration of completed and "
                               "failed workflow steps.", step,
                               (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
        self.steps = c("orchestrator_steps_total", "Steps ended, by status: completed, failed, "
                       "skipped, cancelled.", (*step, "status"))
        self.step_retries = c("orchestrator_step_retries_total", "Step retries.", step)
        self.tool_calls = c("orchestrator_tool_calls_total", "Tool calls, by outcome: success, "
                            "error, unknown (a source that reports only the call).",
                            ("source", "role", "tool", "outcome"))
        self.tool_duration = h("orchestrator_tool_call_duration_seconds", "Tool call duration.",
                               ("source", "role", "tool"),
                               (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.errors = c("orchestrator_errors_total", "Failures by origin (task, workflow, step, "
                        "tool_call) and error type.", ("source", "origin", "error_type"))
        self.logs = c("orchestrator_log_entries_total", "Log entries by level: debug, info, "
                      "warning, error, critical.", ("source", "level"))
        # What a coding agent reports beside its model and tool calls (agent.activity): Claude
        # Code's own counters, the only source that has them. Active time in microseconds.
        agent = ("source", "role")
        self.code_lines = c("orchestrator_claude_code_lines_of_code_total", "Lines of code "
                            "changed, by type: added, removed.", (*agent, "type"))
        self.code_commits = c("orchestrator_claude_code_commits_total", "Git commits made.",
                              agent)
        self.code_pull_requests = c("orchestrator_claude_code_pull_requests_total",
                                    "Pull requests opened.", agent)
        self.active_time = c("orchestrator_claude_code_active_time_seconds_total", "Active time, "
                             "by type: user (at the keyboard), cli (the agent working), "
                             "unspecified.", (*agent, "type"), scale=MICROS_PER_SECOND)
        self.edit_decisions = c("orchestrator_claude_code_edit_decisions_total", "Permission "
                                "decisions on editing tools, by decision: accept, reject.",
                                (*agent, "tool", "decision"))
        self.accepted = c("orchestrator_exporter_events_accepted_total",
                          "Events stored, by event type.", ("type",))
        self.duplicates = c("orchestrator_exporter_events_duplicate_total", "Events acknowledged "
                            "as duplicates of an accepted id and counted nowhere.", ("type",))
        self.ignored = c("orchestrator_exporter_events_ignored_total", "Events of a recognised "
                         "source whose type carries nothing to count: stored, counted here.",
                         ("dialect", "type"))
        self.uncorrelated = c("orchestrator_exporter_events_uncorrelated_total", "Events without "
                              "a run id whose run could not be told (none open, or several): "
                              "stored, counted here only.", ("dialect", "type"))

    def counters(self) -> list[CounterFamily]:
        return [value for value in vars(self).values() if isinstance(value, CounterFamily)]

    def histograms(self) -> list[HistogramFamily]:
        return [value for value in vars(self).values() if isinstance(value, HistogramFamily)]



class FleetState:
    """Applies validated events; owned by the single ledger writer, read by the renderer."""

    def __init__(self, *, prices: PriceTable, budgets: tuple[Budget, ...],
                 label_value_limit: int) -> None:
        self.prices = prices
        self._budget_config = budgets
        self._label_value_limit = label_value_limit
        self._reset(LabelLimiter(label_value_limit))

    def set_budgets(self, budgets: tuple[Budget, ...], first_day: int,
                    sums: dict[str, dict[int, int]]) -> None:
        """Budgets changed at runtime (lock held, nothing pending for the ledger)."""
        self._budget_config = budgets
        self.budgets.replace(budgets, first_day, sums)

    def _reset(self, limiter: LabelLimiter) -> None:
        self.families = Families()
        self.limiter = limiter
        self.budgets = BudgetTracker(self._budget_config)
        self.agents: dict[AgentKey, Agent] = {}
        self.live: dict[AgentKey, Agent] = {}
        # Deleted agents, remembered: what a source says of one after its deletion (a late
        # running total, a late tool call) counts against it, and does not bring it back.
        self.deleted_agents: dict[AgentKey, Agent] = {}
        self.agent_counts: dict[tuple[str, str, str], int] = {}
        self.tasks: dict[AgentKey, Task] = {}
        self.task_agents: dict[AgentKey, set[AgentKey]] = {}
        self.ended_tasks: dict[AgentKey, None] = {}
        self.runs: dict[AgentKey, Run] = {}
        self.ended_runs: dict[AgentKey, None] = {}
        self.steps: dict[StepKey, Step] = {}
        self.run_steps: dict[AgentKey, set[str]] = {}
        self._dirty_agents: dict[AgentKey, Agent] = {}
        self._dirty_tasks: dict[AgentKey, Task] = {}
        self._dirty_runs: dict[AgentKey, Run] = {}
        self._dirty_steps: dict[StepKey, Step] = {}
        self._daily_cost: dict[DailyKey, list[int]] = {}
        self._handlers: dict[str, Callable[[Event], None]] = self._build_handlers()
        # The series of frequent label combinations, found with one lookup (labels.LabelSets).
        families = self.families
        self._usage_series = LabelSets(limiter, families.cost.labelnames, _usage_series)
        self._tool_series = LabelSets(limiter, families.tool_duration.labelnames,
                                      _outcome_series)
        self._step_series = LabelSets(limiter, families.step_retries.labelnames, _step_series)
        self._role_labels = LabelSets(limiter, ("source", "role"), lambda labels: labels)

    # -- applying events ---------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        self._handlers[event.type](event)
        self.families.accepted.inc((event.type,))

    def apply_all(self, events: Iterable[Event]) -> None:
        """`apply` each event; the accepted counter moves once per event type."""
        handlers = self._handlers
        accepted: dict[str, int] = {}
        try:
            for event in events:
                handlers[event.type](event)
                accepted[event.type] = accepted.get(event.type, 0) + 1
        finally:
            for event_type, count in accepted.items():
                self.families.accepted.inc((event_type,), count)

    def count_duplicate(self, event_type: str) -> None:
        # Not marked dirty: the ledger adds duplicates in the commit that acknowledges them.
        values = self.families.duplicates.values
        values[(event_type,)] = values.get((event_type,), 0) + 1

    def _build_handlers(self) -> dict[str, Callable[[Event], None]]:
        handlers: dict[str, Callable[[Event], None]] = {
            "agent.created": self._agent_created,
            "agent.status_changed": self._agent_status_changed,
            "agent.usage": self._agent_usage,
            "agent.tool_call": self._agent_tool_call,
            # Stored for the read API (an agent's files); the agent's activity moves.
            "agent.files": self._agent_files,
            "agent.activity": self._agent_activity,
            "agent.deleted": self._agent_deleted,
            "task.submitted": self._task_submitted,
            "task.started": self._task_started,
            "workflow.started": self._workflow_started,
            "log.entry": self._log_entry,
            "metrics.update": lambda event: None,
            "event.ignored": self._ignored,
        }
        for status in ("completed", "failed", "cancelled"):
            handlers[f"task.{status}"] = self._task_ended
            handlers[f"workflow.{status}"] = self._workflow_ended
        for kind in ("started", "completed", "failed", "skipped", "cancelled", "retried"):
            handlers[f"step.{kind}"] = self._step_event
        return handlers

    def _label(self, label: str, value: str) -> str:
        return self.limiter.value(label, value)

    # agents

    def _agent(self, source: str, agent_id: str, timestamp: float, role: str = UNKNOWN) -> Agent:
        """The agent, created when new; a deleted one is returned as it is (what is told of it
        late counts against it, without bringing it back)."""
        key = (source, agent_id)
        agent = self.agents.get(key)
        if agent is None:
            agent = self.deleted_agents.get(key)
            if agent is not None:
                self._dirty_agents[key] = agent
                return agent
            agent = Agent(source, agent_id, role=role, created_at=timestamp)
            self.agents[key] = agent
            self.live[key] = agent
            self._count_agent(agent, 1)
        agent.last_activity = max(agent.last_activity, timestamp)
        self._dirty_agents[key] = agent
        return agent

    def _count_agent(self, agent: Agent, delta: int) -> None:
        source, role = self._role_labels.get((agent.source, agent.role))
        key = (source, role, agent.status)
        self.agent_counts[key] = self.agent_counts.get(key, 0) + delta

    def _agent_created(self, event: Event) -> None:
        fields = event.fields
        if (event.source, fields["agent_id"]) in self.deleted_agents:
            return  # a row repeated after the deletion
        is_new = (event.source, fields["agent_id"]) not in self.agents
        agent = self._agent(event.source, fields["agent_id"], event.timestamp, fields["role"])
        self._count_agent(agent, -1)
        agent.role = fields["role"]
        agent.model = fields.get("model", agent.model)
        agent.context_limit = fields.get("context_limit_tokens", agent.context_limit)
        self._default_context_limit(agent)
        agent.label_text = None
        self._count_agent(agent, 1)
        if "task_id" in fields:
            self._attach_task(agent, fields["task_id"])
        if is_new:
            self.families.agents_created.inc((
                self._label("source", agent.source), self._label("role", agent.role),
                self._label("model", agent.model)))

    def _attach_task(self, agent: Agent, task_id: str) -> None:
        agent.task_id = task_id
        task_key = (agent.source, task_id)
        self.task_agents.setdefault(task_key, set()).add((agent.source, agent.agent_id))
        task = self.tasks.get(task_key)
        if task is not None:
            agent.task_type = task.task_type
            if agent.role == "ANALYST" and not task.has_analyst_agent:
                task.has_analyst_agent = True
                self._dirty_tasks[task_key] = task
        elif task_key not in self.ended_tasks:
            agent.task_type = UNKNOWN

    def _agent_status_changed(self, event: Event) -> None:
        if (event.source, event.fields["agent_id"]) in self.deleted_agents:
            return
        agent = self._agent(event.source, event.fields["agent_id"], event.timestamp)
        self._count_agent(agent, -1)
        agent.status = event.fields["status"]
        self._count_agent(agent, 1)
        key = (agent.source, agent.agent_id)
        if agent.live:
            self.live.setdefault(key, agent)
        else:
            self.live.pop(key, None)

    def _agent_usage(self, event: Event) -> None:
        fields = event.fields
        agent = self._agent(event.source, fields["agent_id"], event.timestamp)
        model = fields.get("model") or agent.model
        if agent.model == UNKNOWN and model != UNKNOWN:
            agent.model = model
            self._default_context_limit(agent)
        input_tokens = fields.get("input_tokens", 0)
        output_tokens = fields.get("output_tokens", 0)
        cache_read = fields.get("cache_read_tokens", 0)
        # Writes by TTL: the total is their sum unless the source also sends the total.
        creation_1h = fields.get("cache_creation_1h_tokens", 0)
        cache_creation = fields.get("cache_creation_tokens", creation_1h + fields.get(
            "cache_creation_5m_tokens", 0))
        cost_usd = fields.get("cost_usd")
        cost = None if cost_usd is None else usd_to_nano(cost_usd)
        totals = fields.get("totals", False)
        if totals:
            # Running totals: only the increase over what is counted for this agent, from any
            # source, moves a counter; a repeat or a lower total moves nothing.
            input_tokens = max(0, input_tokens - agent.input_tokens)
            output_tokens = max(0, output_tokens - agent.output_tokens)
            cache_read = max(0, cache_read - agent.cache_read_tokens)
            cache_creation = max(0, cache_creation - agent.cache_creation_tokens)
            # A total's increase has no TTL split to go by: priced as 5-minute writes (the
            # default TTL), which is the lower bound of its cost.
            creation_1h = 0
            if cost is not None:
                cost = max(0, cost - agent.cost_nano)
        counts = (input_tokens, output_tokens, cache_read, cache_creation)
        if cost is None:  # priced; a repeated total (nothing new) is not "unpriced" again
            cost = self._priced(event, model, counts, totals, creation_1h) \
                if any(counts) or not totals else 0
        elif any(counts):
            self._audit_cost(event, model, counts, cost, totals, creation_1h)
        labels, token_series = self._usage_series.get(
            (agent.source, agent.role, model, agent.task_type, agent.workflow))
        families = self.families
        if cost:
            families.cost.inc(labels, cost)
        for series, count in zip(token_series, counts, strict=True):
            if count:
                families.tokens.inc(series, count)
        agent.input_tokens += input_tokens
        agent.output_tokens += output_tokens
        agent.cache_read_tokens += cache_read
        agent.cache_creation_tokens += cache_creation
        agent.tokens += input_tokens + output_tokens + cache_read + cache_creation
        agent.cost_nano += cost
        if "context_tokens" in fields:
            agent.context_tokens = fields["context_tokens"]
        if cost or any(counts):
            self._attribute_usage(agent, model, event.timestamp, cost, counts)

    def _priced(self, event: Event, model: str, counts: tuple[int, ...], totals: bool,
                creation_1h: int) -> int:
        price = self.prices.lookup(model, event.timestamp)
        if price is None:
            self.families.unpriced.inc((self._label("source", event.source),
                                        self._label("model", model)))
            return 0
        # A running total's increase may span requests: no prompt-length tier for it.
        return _adjusted(price, event, price.cost_nano(*counts, one_request=not totals,
                                                      creation_1h=creation_1h))

    def _audit_cost(self, event: Event, model: str, counts: tuple[int, ...], reported: int,
                    totals: bool, creation_1h: int) -> None:
        """The source's cost stays the counted one; beside it, what the table would say."""
        price = self.prices.lookup(model, event.timestamp)
        if price is None:
            return
        labels = (self._label("source", event.source), self._label("model", model))
        self.families.cost_reported.inc(labels, reported)
        self.families.cost_computed.inc(labels, _adjusted(price, event, price.cost_nano(
            *counts, one_request=not totals, creation_1h=creation_1h)))

    def _default_context_limit(self, agent: Agent) -> None:
        """An agent whose source names no context window gets its model's, from the table."""
        if not agent.context_limit and agent.model != UNKNOWN:
            price = self.prices.lookup(agent.model)
            if price is not None:
                agent.context_limit = price.context_window

    def _attribute_usage(self, agent: Agent, model: str, timestamp: float, cost: int,
                         counts: tuple[int, ...]) -> None:
        day_key = (epoch_day(timestamp), agent.source, agent.role, model, agent.task_type,
                   agent.workflow)
        daily = self._daily_cost.get(day_key)
        if daily is None:
            self._daily_cost[day_key] = [cost, *counts]
        else:
            for index, value in enumerate((cost, *counts)):
                daily[index] += value
        if cost:
            self._attribute_cost(agent, model, timestamp, cost)

    def _attribute_cost(self, agent: Agent, model: str, timestamp: float, cost: int) -> None:
        if agent.task_id is not None:
            task = self.tasks.get((agent.source, agent.task_id))
            if task is not None:
                task.cost_nano += cost
                self._dirty_tasks[(task.source, task.task_id)] = task
        if self.budgets.budgets:
            self.budgets.add(timestamp, {"role": agent.role, "model": model,
                                         "task_type": agent.task_type,
                                         "workflow": agent.workflow}, cost)

    def _agent_tool_call(self, event: Event) -> None:
        fields = event.fields
        agent = self._agent(event.source, fields["agent_id"], event.timestamp)
        labels, by_outcome = self._tool_series.get((event.source, agent.role, fields["tool"]))
        self.families.tool_calls.inc(by_outcome[fields["outcome"]])
        self.families.tool_calls.touch(by_outcome["error"])
        if "duration_seconds" in fields:
            self.families.tool_duration.observe(labels, fields["duration_seconds"])
        if fields["outcome"] == "error":
            self._count_error(event.source, "tool_call", fields.get("error_type"))

    def _agent_files(self, event: Event) -> None:
        self._agent(event.source, event.fields["agent_id"], event.timestamp)

    def _agent_activity(self, event: Event) -> None:
        fields = event.fields
        agent = self._agent(event.source, fields["agent_id"], event.timestamp)
        labels = self._role_labels.get((agent.source, agent.role))
        families = self.families
        for name, kind in (("lines_added", "added"), ("lines_removed", "removed")):
            if fields.get(name):
                families.code_lines.inc((*labels, kind), fields[name])
        if fields.get("commits"):
            families.code_commits.inc(labels, fields["commits"])
        if fields.get("pull_requests"):
            families.code_pull_requests.inc(labels, fields["pull_requests"])
        if fields.get("active_seconds"):
            families.active_time.inc((*labels, fields.get("active_type", UNSPECIFIED)),
                                     round(fields["active_seconds"] * MICROS_PER_SECOND))
        if "edit_decision" in fields and fields.get("edit_decisions", 1):
            tool = self._label("tool", fields.get("edit_tool", UNKNOWN))
            families.edit_decisions.inc((*labels, tool, fields["edit_decision"]),
                                        fields.get("edit_decisions", 1))

    def _agent_deleted(self, event: Event) -> None:
        key = (event.source, event.fields["agent_id"])
        agent = self.agents.pop(key, None)
        if agent is None:
            return
        self._count_agent(agent, -1)
        self.live.pop(key, None)
        self._remember(self.deleted_agents, key, agent, DELETED_AGENT_MEMORY)
        agent.deleted = True
        agent.last_activity = max(agent.last_activity, event.timestamp)
        self._dirty_agents[key] = agent
        if agent.task_id is not None:
            members = self.task_agents.get((agent.source, agent.task_id))
            if members is not None:
                members.discard(key)

    def _touch_agent(self, source: str, agent_id: str | None, timestamp: float) -> None:
        if agent_id is None:
            return
        agent = self.agents.get((source, agent_id))
        if agent is not None and timestamp > agent.last_activity:
            agent.last_activity = timestamp
            self._dirty_agents[(source, agent_id)] = agent

    # tasks

    def _task(self, source: str, task_id: str) -> Task | None:
        key = (source, task_id)
        if key in self.ended_tasks:
            return None
        task = self.tasks.get(key)
        if task is None:
            task = self.tasks[key] = Task(source, task_id)
        self._dirty_tasks[key] = task
        return task

    def _task_submitted(self, event: Event) -> None:
        fields = event.fields
        task = self._task(event.source, fields["task_id"])
        if task is None:
            return
        first = task.submitted_at is None
        task.task_type = fields.get("task_type", task.task_type)
        task.complexity = fields.get("complexity", task.complexity)
        task.analyst = fields.get("analyst", task.analyst)
        task.mode = fields.get("mode", task.mode)
        task.description = fields.get("description", task.description)
        if first:
            task.submitted_at = event.timestamp
            source, task_type = (self._label("source", task.source),
                                 self._label("task_type", task.task_type))
            self.families.tasks_submitted.inc((source, task_type, task.analyst_label))
            for status in ("completed", "failed", "cancelled"):
                self.families.tasks.touch((source, task_type, status, task.analyst_label))
        for agent_key in self.task_agents.get((task.source, task.task_id), ()):
            agent = self.agents.get(agent_key)
            if agent is not None:
                agent.task_type = task.task_type
                task.has_analyst_agent = task.has_analyst_agent or agent.role == "ANALYST"

    def _task_started(self, event: Event) -> None:
        task = self._task(event.source, event.fields["task_id"])
        if task is not None:  # started once: sources that repeat the whole row say it again
            task.status = "running"
            if task.started_at is None:
                task.started_at = event.timestamp

    def _task_ended(self, event: Event) -> None:
        task = self._task(event.source, event.fields["task_id"])
        if task is None:
            return
        key = (task.source, task.task_id)
        del self.tasks[key]
        self.task_agents.pop(key, None)
        self._remember(self.ended_tasks, key)
        task.status = event.type.partition(".")[2]
        task.ended_at = event.timestamp
        task.error = event.fields.get("error")
        labels = (self._label("source", task.source), self._label("task_type", task.task_type),
                  task.analyst_label, task.status)
        self.families.tasks.inc((labels[0], labels[1], task.status, labels[2]))
        started = task.started_at if task.started_at is not None else task.submitted_at
        if started is not None:
            self.families.task_duration.observe(labels, max(0.0, event.timestamp - started))
            self.families.task_cost.observe(labels, task.cost_nano / NANO_PER_USD)
        if task.status == "failed":
            self._count_error(task.source, "task", event.fields.get("error_type"))

    @staticmethod
    def _remember(ended: dict[AgentKey, Any], key: AgentKey, value: Any = None,
                  limit: int | None = None) -> None:
        ended[key] = value
        if len(ended) > (ENDED_MEMORY if limit is None else limit):
            del ended[next(iter(ended))]

    # workflow runs and steps

    def _run(self, source: str, run_id: str) -> Run | None:
        key = (source, run_id)
        if key in self.ended_runs:
            return None
        run = self.runs.get(key)
        if run is None:
            run = self.runs[key] = Run(source, run_id)
        self._dirty_runs[key] = run
        return run

    def _uncorrelated(self, event: Event) -> None:
        self.families.uncorrelated.inc((event.dialect, event.type))

    def _open_runs_of(self, source: str, workflow: str) -> list[Run]:
        return [run for run in self.runs.values()
                if run.workflow == workflow and run.source == source]

    def _workflow_started(self, event: Event) -> None:
        fields = event.fields
        run_id = fields.get("run_id")
        if run_id is None:
            # Only the workflow is named (@orchestr8's bus): the execution already open for it
            # is this run; with none, the workflow id stands for the run.
            open_runs = self._open_runs_of(event.source, fields["workflow"])
            if len(open_runs) > 1:
                self._uncorrelated(event)
                return
            run_id = open_runs[0].run_id if open_runs else fields["workflow"]
        run = self._run(event.source, run_id)
        if run is None or run.started_at is not None:
            return
        run.workflow = fields.get("workflow", UNKNOWN)
        run.steps = fields.get("steps", [])
        run.started_at = event.timestamp
        labels = (self._label("source", run.source), self._label("workflow", run.workflow))
        self.families.runs_started.inc(labels)
        for status in ("completed", "failed", "cancelled"):
            self.families.runs.touch((*labels, status))

    def _ending_run(self, event: Event) -> Run | None:
        """The run a workflow end names, or the one open run of its workflow. With several
        open, the oldest: counted as uncorrelated, but closed, so that one lost or overlapping
        end cannot keep every later run of the workflow open."""
        run_id = event.fields.get("run_id")
        if run_id is not None:
            return self._run(event.source, run_id)
        open_runs = self._open_runs_of(event.source, event.fields["workflow"])
        if len(open_runs) != 1:
            self._uncorrelated(event)
        if not open_runs:
            return None
        oldest = min(open_runs, key=lambda run: run.started_at or 0.0)
        return self._run(event.source, oldest.run_id)

    def _workflow_ended(self, event: Event) -> None:
        run = self._ending_run(event)
        if run is None:
            return
        key = (run.source, run.run_id)
        del self.runs[key]
        self._remember(self.ended_runs, key)
        run.status = event.type.partition(".")[2]
        run.ended_at = event.timestamp
        self._close_steps(run)
        labels = (self._label("source", run.source), self._label("workflow", run.workflow),
                  run.status)
        self.families.runs.inc(labels)
        if run.started_at is not None:
            self.families.run_duration.observe(labels, max(0.0, event.timestamp - run.started_at))
        if run.status == "failed":
            self._count_error(run.source, "workflow", event.fields.get("error_type"))

    def _close_steps(self, run: Run) -> None:
        """A run that ends ends its steps still running: cancelled with it, else skipped."""
        status = "cancelled" if run.status == "cancelled" else "skipped"
        for step_id in self.run_steps.pop((run.source, run.run_id), ()):
            step = self.steps.pop((run.source, run.run_id, step_id), None)
            if step is None or step.status != "running":
                continue
            step.status, step.ended_at = status, run.ended_at
            series = self._step_series.get((step.source, run.workflow, step.step, step.agent))
            self.families.steps.inc(series.by_status[status])
            self._dirty_steps[(run.source, run.run_id, step_id)] = step

    def _correlated_step_run(self, event: Event) -> str | None:
        """The run of a step event without one; None when it cannot be told (counted) or the
        step already ended (told again)."""
        step_id = event.fields["step_id"]
        running: list[Step] = []
        seen = False
        for (source, candidate), step_ids in self.run_steps.items():
            if source == event.source and step_id in step_ids:
                seen = True
                step = self.steps[(source, candidate, step_id)]
                if step.status == "running":
                    running.append(step)
        if len(running) == 1:
            return running[0].run_id
        if not seen or running:  # nowhere, or running in several runs at once
            self._uncorrelated(event)
        if not running:
            return None  # nowhere, or a step that already ended told again: nothing to count
        # Several: the one that started first (counted as uncorrelated all the same).
        return min(running, key=lambda step: step.started_at or 0.0).run_id

    def _step(self, event: Event, run_id: str) -> tuple[Step, str]:
        fields = event.fields
        run = self.runs.get((event.source, run_id))
        key = (event.source, run_id, fields["step_id"])
        step = self.steps.get(key)
        if step is None:
            step = Step(event.source, run_id, fields["step_id"], step=fields["step_id"])
            if run is not None:
                self.steps[key] = step
                self.run_steps.setdefault(key[:2], set()).add(step.step_id)
        step.step = fields.get("step", step.step)
        step.agent = fields.get("agent", step.agent)
        step.agent_id = fields.get("agent_id", step.agent_id)
        if run is not None:
            self._dirty_steps[key] = step
        return step, run.workflow if run is not None else UNKNOWN

    def _step_event(self, event: Event) -> None:
        run_id = event.fields.get("run_id")
        if run_id is None:
            run_id = self._correlated_step_run(event)
            if run_id is None:
                return
        elif (event.source, run_id) in self.ended_runs:
            return  # its run ended: told again, it counts nothing
        step, workflow = self._step(event, run_id)
        kind = event.type.partition(".")[2]
        series = self._step_series.get((step.source, workflow, step.step, step.agent))
        labels = series.labels
        if kind in ("started", "retried"):
            if not series.touched:
                self.families.step_retries.touch(labels)
                for ended in series.by_status.values():
                    self.families.steps.touch(ended)
                series.touched = True
            if kind == "retried":
                step.retries += 1
                self.families.step_retries.inc(labels)
            step.status = "running"
            step.started_at = event.timestamp
            self._assign_workflow(step, workflow, event.timestamp)
            return
        step.status = kind
        step.ended_at = event.timestamp
        self.families.steps.inc(series.by_status[kind])
        if kind in ("completed", "failed") and step.started_at is not None:
            self.families.step_duration.observe(labels,
                                                max(0.0, event.timestamp - step.started_at))
        if kind == "failed":
            self._count_error(step.source, "step", event.fields.get("error_type"))
        self._touch_agent(step.source, step.agent_id, event.timestamp)

    def _assign_workflow(self, step: Step, workflow: str, timestamp: float) -> None:
        if step.agent_id is None:
            return
        agent = self.agents.get((step.source, step.agent_id))
        if agent is not None:
            agent.workflow = workflow
            agent.last_activity = max(agent.last_activity, timestamp)
            self._dirty_agents[(agent.source, agent.agent_id)] = agent

    # the rest

    def _count_error(self, source: str, origin: str, error_type: str | None) -> None:
        self.families.errors.inc((self._label("source", source), origin,
                                  self._label("error_type", error_type or UNSPECIFIED)))

    def _ignored(self, event: Event) -> None:
        self.families.ignored.inc(
            (event.dialect, self._label("event_type", event.fields["event_type"])))

    def _log_entry(self, event: Event) -> None:
        self.families.logs.inc((self._label("source", event.source), event.fields["level"]))
        self._touch_agent(event.source, event.fields.get("agent_id"), event.timestamp)

    # -- persistence -------------------------------------------------------------------------

    def pending_changes(self) -> Changes:
        """What `take_changes` would take of entities and day sums, left in place: the read
        API lays it over the ledger's rows (read your writes without writing). The entities
        and the day sums are the live objects: copy them (`Ledger.prepare_checkpoint`) before
        releasing the lock."""
        return Changes(
            counters={}, histograms={}, agents=list(self._dirty_agents.values()),
            tasks=list(self._dirty_tasks.values()), runs=list(self._dirty_runs.values()),
            steps=list(self._dirty_steps.values()), label_values=[],
            daily_cost=self._daily_cost)

    def take_changes(self) -> Changes:
        """Everything changed since the last call; the caller writes it or calls `restore`."""
        counters: dict[str, int] = {}
        for family in self.families.counters():
            for labels in family.dirty:
                counters[family.key(labels)] = family.values[labels]
            family.dirty = set()
        histograms: dict[str, Histogram] = {}
        for histogram_family in self.families.histograms():
            for labels in histogram_family.dirty:
                histograms[histogram_family.key(labels)] = histogram_family.values[labels]
            histogram_family.dirty = set()
        changes = Changes(
            counters=counters, histograms=histograms,
            agents=list(self._dirty_agents.values()), tasks=list(self._dirty_tasks.values()),
            runs=list(self._dirty_runs.values()), steps=list(self._dirty_steps.values()),
            label_values=self.limiter.take_added(), daily_cost=self._daily_cost)
        self._dirty_agents, self._dirty_tasks = {}, {}
        self._dirty_runs, self._dirty_steps = {}, {}
        self._daily_cost = {}
        return changes

    def give_back(self, changes: Changes) -> None:
        """Changes taken for a checkpoint whose write failed: the next checkpoint writes them
        (with whatever changed since), so none is lost and none is counted twice."""
        counters = {family.name: family for family in self.families.counters()}
        histograms = {family.name: family for family in self.families.histograms()}
        for key in changes.counters:
            name, labels = split_key(key)
            counters[name].dirty.add(labels)
        for key in changes.histograms:
            name, labels = split_key(key)
            histograms[name].dirty.add(labels)
        for agent in changes.agents:
            self._dirty_agents.setdefault((agent.source, agent.agent_id), agent)
        for task in changes.tasks:
            self._dirty_tasks.setdefault((task.source, task.task_id), task)
        for run in changes.runs:
            self._dirty_runs.setdefault((run.source, run.run_id), run)
        for step in changes.steps:
            self._dirty_steps.setdefault((step.source, step.run_id, step.step_id), step)
        self.limiter.added[:0] = changes.label_values
        for day_key, usage in changes.daily_cost.items():
            daily = self._daily_cost.get(day_key)
            if daily is None:
                self._daily_cost[day_key] = list(usage)
            else:
                for index, value in enumerate(usage):
                    daily[index] += value

    def restore(self, snapshot: Snapshot) -> None:
        """Rebuild from the ledger's rows: counters exactly as last committed."""
        self._reset(LabelLimiter(self._label_value_limit, snapshot.label_values))
        self._restore_series(snapshot)
        for agent in snapshot.agents:
            key = (agent.source, agent.agent_id)
            self.agents[key] = agent
            if agent.live:
                self.live[key] = agent
            self._count_agent(agent, 1)
            if agent.task_id is not None:
                self.task_agents.setdefault((agent.source, agent.task_id), set()).add(key)
        self.deleted_agents = {(agent.source, agent.agent_id): agent
                               for agent in snapshot.deleted_agents}
        self.tasks = {(task.source, task.task_id): task for task in snapshot.tasks}
        self.ended_tasks = dict.fromkeys(snapshot.ended_tasks)
        self.runs = {(run.source, run.run_id): run for run in snapshot.runs}
        self.ended_runs = dict.fromkeys(snapshot.ended_runs)
        self.steps = {(step.source, step.run_id, step.step_id): step for step in snapshot.steps}
        for step in snapshot.steps:
            self.run_steps.setdefault((step.source, step.run_id), set()).add(step.step_id)
        self.budgets.restore(snapshot.budget_first_day, snapshot.budget_days)

    def _restore_series(self, snapshot: Snapshot) -> None:
        counters = {family.name: family for family in self.families.counters()}
        for key, value in snapshot.counters.items():
            name, labels = split_key(key)
            family = counters.get(name)
            if family is not None:
                family.values[labels] = value
        histograms = {family.name: family for family in self.families.histograms()}
        for key, histogram in snapshot.histograms.items():
            name, labels = split_key(key)
            histogram_family = histograms.get(name)
            if histogram_family is not None:
                histogram_family.values[labels] = histogram


def _adjusted(price: Price, event: Event, nano: int) -> int:
    """The cost with the request's batch, fast-mode and data-residency multipliers, rounded
    half up to a whole nano-dollar."""
    fields = event.fields
    factor = price.multiplier(tier=fields.get("service_tier"), speed=fields.get("speed"),
                              geo=fields.get("inference_geo"))
    return nano if factor == 1 else int(nano * factor + Fraction(1, 2))
