"""The /metrics exposition: fleet state rendered straight to Prometheus text format 0.0.4.

prometheus_client builds a Metric and a Sample object per series on every scrape (about 0.2 s at
10k series); writing the text directly from the state is several times faster, and the label
strings of a series are built once. The exporter's own metrics come from its registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest

from exporter.budgets import period_bounds
from exporter.events import AGENT_STATUSES
from exporter.fairlock import FairLock
from exporter.labels import CAPPED_LABELS
from exporter.pricing import NANO_PER_USD
from exporter.series import CounterFamily, HistogramFamily, label_text
from exporter.state import Agent, FleetState

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_LIVE_AGENT_LABELS: Final = ("source", "agent_id", "role")


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(value)


def _header(lines: list[str], name: str, help_text: str, kind: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


class MetricsRenderer:
    """Renders the state and the exporter's own registry under the state's lock, then what
    `queried` counts in the ledger."""

    def __init__(self, *, state: FleetState, lock: FairLock, registry: CollectorRegistry,
                 live_agent_limit: int, queried: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.lock = lock
        self.registry = registry
        # Collectors that query the ledger: never under the lock, which would hold ingest up
        # for as long as a query waits for a connection.
        self.queried = queried
        self.live_agent_limit = live_agent_limit
        self.clock = clock
        self._labels: dict[tuple[str, tuple[str, ...]], str] = {}
        self._seen_gauges: dict[str, set[tuple[str, ...]]] = {}

    def render(self) -> bytes:
        lines: list[str] = []
        # The own registry too under the lock (its metrics need none): once the lock is free
        # the applier, the busiest thread, takes the GIL turn about with the scrape, which then
        # waited up to 100 ms for 2 ms of work (docs/benchmarks.md); the applier waits those 2 ms.
        with self.lock:
            self._render_state(lines)
            own = generate_latest(self.registry)
        lines.append("")
        body = "\n".join(lines).encode() + own
        return body if self.queried is None else body + generate_latest(self.queried)

    def _render_state(self, lines: list[str]) -> None:
        state = self.state
        for family in state.families.counters():
            self._counter(lines, family)
        for histogram in state.families.histograms():
            self._histogram(lines, histogram)
        families = state.families
        self._gauge(lines, "orchestrator_agents", "Agents not deleted, by current status.",
                    ("source", "role", "status"), state.agent_counts.items(),
                    {(source, role, status) for source, role, _ in families.agents_created.values
                     for status in AGENT_STATUSES})
        self._gauge(lines, "orchestrator_tasks_in_flight", "Tasks submitted and not ended, by "
                    "status: pending, running.", ("source", "task_type", "analyst", "status"),
                    self._tasks_in_flight().items(),
                    {(*labels, status) for labels in families.tasks_submitted.values
                     for status in ("pending", "running")})
        self._gauge(lines, "orchestrator_workflow_runs_active", "Workflow runs started and not "
                    "ended.", ("source", "workflow"), self._active_runs().items(),
                    set(families.runs_started.values))
        self._live_agents(lines)
        self._budgets(lines)
        self._limits(lines)

    # -- families ----------------------------------------------------------------------------

    def _label_text(self, name: str, names: tuple[str, ...], values: tuple[str, ...]) -> str:
        key = (name, values)
        text = self._labels.get(key)
        if text is None:
            text = self._labels[key] = label_text(names, values)
        return text

    def _counter(self, lines: list[str], family: CounterFamily) -> None:
        _header(lines, family.name, family.help, "counter")
        scale = family.scale
        for labels, value in family.values.items():
            rendered = value / scale if scale != 1 else value
            lines.append(f"{family.name}{self._label_text(family.name, family.labelnames, labels)}"
                         f" {format_value(rendered)}")

    def _histogram(self, lines: list[str], family: HistogramFamily) -> None:
        name = family.name
        _header(lines, name, family.help, "histogram")
        bounds = [*(format_value(float(bound)) for bound in family.bounds), "+Inf"]
        bucket_names = (*family.labelnames, "le")
        for labels, histogram in family.values.items():
            cumulative = 0
            for bound, count in zip(bounds, histogram.buckets, strict=True):
                cumulative += count
                text = self._label_text(name + "_bucket", bucket_names, (*labels, bound))
                lines.append(f"{name}_bucket{text} {cumulative}")
            text = self._label_text(name, family.labelnames, labels)
            lines.append(f"{name}_sum{text} {format_value(histogram.sum)}")
            lines.append(f"{name}_count{text} {histogram.count}")

    def _gauge(self, lines: list[str], name: str, help_text: str, labelnames: tuple[str, ...],
               samples: Iterable[tuple[tuple[str, ...], float]],
               known: set[tuple[str, ...]]) -> None:
        """A gauge whose series read 0 (not absent) for every label set the counters know of."""
        _header(lines, name, help_text, "gauge")
        seen = self._seen_gauges.setdefault(name, set())
        current = dict(samples)
        seen.update(current)
        seen.update(known)
        for labels in sorted(seen):
            text = self._label_text(name, labelnames, labels)
            lines.append(f"{name}{text} {format_value(current.get(labels, 0))}")

    # -- gauges derived from entities ----------------------------------------------------------

    def _tasks_in_flight(self) -> dict[tuple[str, ...], int]:
        counts: dict[tuple[str, ...], int] = {}
        label = self.state.limiter.value
        for task in self.state.tasks.values():
            key = (label("source", task.source), label("task_type", task.task_type),
                   task.analyst_label, "running" if task.status == "running" else "pending")
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _active_runs(self) -> dict[tuple[str, ...], int]:
        counts: dict[tuple[str, ...], int] = {}
        label = self.state.limiter.value
        for run in self.state.runs.values():
            if run.started_at is not None:
                key = (label("source", run.source), label("workflow", run.workflow))
                counts[key] = counts.get(key, 0) + 1
        return counts

    def _live_agents(self, lines: list[str]) -> None:
        agents = list(self.state.live.values())[:self.live_agent_limit]
        label = self.state.limiter.value
        info = [f'orchestrator_agent_info{{source="{agent.source}",agent_id="{agent.agent_id}",'
                f'role="{label("role", agent.role)}",model="{label("model", agent.model)}",'
                f'status="{agent.status}"}} 1' for agent in agents]
        _header(lines, "orchestrator_agent_info", "Always 1 for a live agent; carries its model "
                "and status.", "gauge")
        lines.extend(info)
        texts = [self._agent_labels(agent) for agent in agents]
        for name, help_text, read in _LIVE_AGENT_GAUGES:
            _header(lines, name, help_text, "gauge")
            lines.extend(f"{name}{text} {format_value(read(agent))}"
                         for agent, text in zip(agents, texts, strict=True))

    def _agent_labels(self, agent: Agent) -> str:
        if agent.label_text is None:
            role = self.state.limiter.value("role", agent.role)
            agent.label_text = label_text(_LIVE_AGENT_LABELS,
                                          (agent.source, agent.agent_id, role))
        return agent.label_text

    def _budgets(self, lines: list[str]) -> None:
        now = self.clock()
        tracker = self.state.budgets
        tracker.prune(now)
        rows = [(budget, *period_bounds(budget.period, now)) for budget in tracker.budgets]
        for name, help_text, column in _BUDGET_GAUGES:
            _header(lines, name, help_text, "gauge")
            for budget, start, end in rows:
                value: float = {
                    "limit": budget.limit_usd,
                    "spent": tracker.spent_nano(budget, now) / NANO_PER_USD,
                    "start": start, "end": end}[column]
                text = label_text(("budget", "period"), (budget.name, budget.period))
                lines.append(f"{name}{text} {format_value(value)}")

    def _limits(self, lines: list[str]) -> None:
        state = self.state
        limiter = state.limiter
        _header(lines, "orchestrator_exporter_label_values", "Distinct values held for a "
                "capped label.", "gauge")
        lines.extend(f'orchestrator_exporter_label_values{{label="{label}"}} '
                     f"{len(limiter.known[label])}" for label in CAPPED_LABELS)
        _header(lines, "orchestrator_exporter_label_overflow_total", "Values reported as "
                "`other` because the label was full.", "counter")
        lines.extend(f'orchestrator_exporter_label_overflow_total{{label="{label}"}} '
                     f"{limiter.overflow[label]}" for label in CAPPED_LABELS)
        live = len(state.live)
        with_series = min(live, self.live_agent_limit)
        for name, help_text, value in (
            ("orchestrator_exporter_label_values_limit", "Cap on distinct values per label "
             "(EXPORTER_LABEL_VALUE_LIMIT).", limiter.limit),
            ("orchestrator_exporter_live_agents", "Live agents with per-agent series.",
             with_series),
            ("orchestrator_exporter_live_agents_limit", "Cap on live agents with series "
             "(EXPORTER_LIVE_AGENT_LIMIT).", self.live_agent_limit),
            ("orchestrator_exporter_live_agents_over_limit", "Live agents without per-agent "
             "series because the cap was reached.", live - with_series),
        ):
            _header(lines, name, help_text, "gauge")
            lines.append(f"{name} {value}")


_LIVE_AGENT_GAUGES: Final[tuple[tuple[str, str, Callable[[Agent], float]], ...]] = (
    ("orchestrator_agent_last_activity_timestamp_seconds",
     "Unix time of the live agent's last event.", lambda agent: agent.last_activity),
    ("orchestrator_agent_context_tokens", "Current context-window fill of the live agent.",
     lambda agent: agent.context_tokens),
    ("orchestrator_agent_context_limit_tokens", "Context-window size of the live agent.",
     lambda agent: agent.context_limit),
    ("orchestrator_agent_cost_usd", "Cost of the live agent so far.",
     lambda agent: agent.cost_nano / NANO_PER_USD),
    ("orchestrator_agent_tokens", "Tokens (all types) used by the live agent so far.",
     lambda agent: agent.tokens),
)

_BUDGET_GAUGES: Final = (
    ("orchestrator_budget_limit_usd", "Budget limit from the config file.", "limit"),
    ("orchestrator_budget_spent_usd", "Spend within the budget's scope over the current "
     "calendar period (UTC).", "spent"),
    ("orchestrator_budget_period_start_timestamp_seconds", "Start of the budget's current "
     "period.", "start"),
    ("orchestrator_budget_period_end_timestamp_seconds", "End of the budget's current period.",
     "end"),
)
