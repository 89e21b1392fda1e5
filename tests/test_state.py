"""Fleet semantics through the in-process path: pricing, ANALYST, live agents, caps, budgets,
restore from the ledger."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from support import parse_metrics

from exporter.budgets import period_bounds
from exporter.callback import MonitorCallback
from exporter.config import parse_config
from exporter.events import validate_one
from exporter.pricing import load_price_table
from exporter.service import Exporter, build_exporter
from exporter.settings import Settings
from exporter.state import DELETED_AGENT_MEMORY, ENDED_MEMORY, FleetState

CONFIG = {
    "budgets": [
        {"name": "daily", "limit_usd": 10, "period": "day"},
        {"name": "builders", "limit_usd": 5, "period": "month", "scope": {"role": "BUILDER"}},
        {"name": "weekly-opus", "limit_usd": 50, "period": "week",
         "scope": {"model": "claude-opus-4-5"}},
    ],
    "pricing": {"acme-1": {"input": 2, "output": 4, "cache_read": 0.2, "cache_write": 2.5}},
}


class Harness:
    def __init__(self, path: Path, **settings: object) -> None:
        self.path = path
        self.settings = Settings(database_url=f"sqlite:///{path / 'ledger.db'}", **settings)
        self.exporter: Exporter = self._start()
        self.callback = MonitorCallback(self.exporter.pipeline, strict=True)

    def _start(self) -> Exporter:
        exporter = build_exporter(self.settings, registry=CollectorRegistry(),
                                  config=parse_config(CONFIG))
        exporter.start()
        return exporter

    def send(self, *events: dict[str, object]) -> None:
        for event in events:
            self.callback.emit(event)
        assert self.callback.flush(10)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        return parse_metrics(self.exporter.renderer.render().decode())

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, frozenset(labels.items())))

    def restart(self) -> None:
        self.exporter.close()
        self.exporter = self._start()
        self.callback = MonitorCallback(self.exporter.pipeline, strict=True)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.exporter.close()


def created(agent_id: str, role: str, model: str = "claude-sonnet-4-5", **extra: object):
    return {"type": "agent.created", "agent_id": agent_id, "role": role, "model": model, **extra}


def test_usage_is_priced_per_token_type_and_exactly(harness: Harness):
    harness.send(created("a", "BUILDER", "claude-sonnet-4-5-20250929"),
                 {"type": "agent.usage", "agent_id": "a", "input_tokens": 1_000_000,
                  "output_tokens": 100_000, "cache_read_tokens": 10_000,
                  "cache_creation_tokens": 1_000})
    labels = {"source": "default", "role": "BUILDER", "model": "claude-sonnet-4-5-20250929",
              "task_type": "none", "workflow": "none"}
    # One request of 1,011,000 prompt tokens: over Sonnet 4.5's 200k long-context threshold, so
    # $6 / $22.50 / $0.60 / $7.50: 6.00 + 2.25 + 0.006 + 0.0075 dollars
    assert harness.value("orchestrator_cost_usd_total", **labels) == 8.2635
    assert harness.value("orchestrator_tokens_total", **labels, type="cache_creation") == 1000
    harness.send(created("b", "BUILDER", "claude-sonnet-4-6"),
                 {"type": "agent.usage", "agent_id": "b", "input_tokens": 1_000_000,
                  "output_tokens": 100_000, "cache_read_tokens": 10_000,
                  "cache_creation_tokens": 1_000})
    # Sonnet 4.6 has the 1M window at its standard rates: 3.00 + 1.50 + 0.003 + 0.00375 dollars
    assert harness.value("orchestrator_cost_usd_total", **{
        **labels, "model": "claude-sonnet-4-6"}) == 4.50675
    # Its context window comes from the price table when the source names none.
    assert harness.value("orchestrator_agent_context_limit_tokens", source="default",
                         agent_id="b", role="BUILDER") == 1_000_000


def test_explicit_cost_wins_and_unknown_models_cost_nothing_but_are_counted(harness: Harness):
    harness.send(created("a", "TESTER", "mystery-model"),
                 {"type": "agent.usage", "agent_id": "a", "input_tokens": 500},
                 {"type": "agent.usage", "agent_id": "a", "input_tokens": 5, "cost_usd": 0.1},
                 {"type": "agent.usage", "agent_id": "a", "model": "acme-1",
                  "input_tokens": 1_000_000})
    assert harness.value("orchestrator_unpriced_usage_events_total", source="default",
                         model="mystery-model") == 1
    assert harness.value("orchestrator_agent_cost_usd", source="default", agent_id="a",
                         role="TESTER") == 2.1


def test_analyst_label_follows_the_flag_or_an_analyst_agent(harness: Harness):
    harness.send({"type": "task.submitted", "task_id": "t1", "task_type": "feature"},
                 {"type": "task.submitted", "task_id": "t2", "task_type": "feature",
                  "analyst": True},
                 {"type": "task.submitted", "task_id": "t3", "task_type": "feature"},
                 created("an", "ANALYST", task_id="t3"),
                 {"type": "agent.usage", "agent_id": "an", "cost_usd": 0.25},
                 {"type": "task.started", "task_id": "t3", "timestamp": time.time() - 90},
                 {"type": "task.completed", "task_id": "t1"},
                 {"type": "task.completed", "task_id": "t2"},
                 {"type": "task.completed", "task_id": "t3"},
                 {"type": "task.completed", "task_id": "t3"})
    base = {"source": "default", "task_type": "feature", "status": "completed"}
    assert harness.value("orchestrator_tasks_total", **base, analyst="excluded") == 1
    assert harness.value("orchestrator_tasks_total", **base, analyst="included") == 2
    assert harness.value("orchestrator_task_cost_usd_sum", **base, analyst="included") == 0.25
    assert harness.value("orchestrator_task_duration_seconds_bucket", **base,
                         analyst="included", le="60.0") == 1  # t2: no start, duration ~0
    assert harness.value("orchestrator_task_duration_seconds_bucket", **base,
                         analyst="included", le="120.0") == 2


def test_live_agent_series_end_with_the_agent_and_the_status_gauge_keeps_count(
        harness: Harness):
    harness.send(created("a", "BUILDER"), created("b", "BUILDER"),
                 {"type": "agent.status_changed", "agent_id": "a", "status": "running"},
                 {"type": "agent.status_changed", "agent_id": "b", "status": "completed"})
    info = {key for key in harness.metrics() if key[0] == "orchestrator_agent_info"}
    assert [dict(labels)["agent_id"] for _, labels in info] == ["a"]
    agents = {"source": "default", "role": "BUILDER"}
    assert harness.value("orchestrator_agents", **agents, status="completed") == 1
    harness.send({"type": "agent.deleted", "agent_id": "b"},
                 {"type": "agent.deleted", "agent_id": "a"})
    assert harness.value("orchestrator_agents", **agents, status="completed") == 0
    assert not any(key[0] == "orchestrator_agent_info" for key in harness.metrics())


def test_free_form_labels_overflow_to_other_and_keep_their_mapping_after_restart(
        tmp_path: Path):
    harness = Harness(tmp_path, label_value_limit=2, live_agent_limit=1)
    try:
        harness.send(*[{"type": "agent.tool_call", "agent_id": "a", "tool": f"tool-{index}",
                        "outcome": "success"} for index in range(4)])
        tools = {dict(labels)["tool"] for name, labels in harness.metrics()
                 if name == "orchestrator_tool_calls_total"}
        assert tools == {"tool-0", "tool-1", "other"}
        assert harness.value("orchestrator_exporter_label_overflow_total", label="tool") == 2
        harness.send(created("b", "X"))
        assert harness.value("orchestrator_exporter_live_agents_over_limit") == 1
        harness.restart()
        harness.send({"type": "agent.tool_call", "agent_id": "a", "tool": "tool-1",
                      "outcome": "success"},
                     {"type": "agent.tool_call", "agent_id": "a", "tool": "tool-9",
                      "outcome": "success"})
        calls = {"source": "default", "role": "unknown", "outcome": "success"}
        assert harness.value("orchestrator_tool_calls_total", **calls, tool="tool-1") == 2
        assert harness.value("orchestrator_tool_calls_total", **calls, tool="other") == 3
    finally:
        harness.exporter.close()


def test_budgets_sum_exactly_over_the_current_period_and_scope(harness: Harness):
    now = time.time()
    day_start, _ = period_bounds("day", now)
    harness.send(created("b", "BUILDER"), created("o", "REVIEWER", "claude-opus-4-5"),
                 {"type": "agent.usage", "agent_id": "b", "cost_usd": 1.1},
                 {"type": "agent.usage", "agent_id": "o", "cost_usd": 2.2},
                 # yesterday: outside the daily period, inside the month unless it just began
                 {"type": "agent.usage", "agent_id": "b", "cost_usd": 4.0,
                  "timestamp": day_start - 1})
    assert harness.value("orchestrator_budget_spent_usd", budget="daily", period="day") == \
        pytest.approx(3.3, abs=1e-12)
    month_start, month_end = period_bounds("month", now)
    builders = 5.1 if day_start - 1 >= month_start else 1.1
    assert harness.value("orchestrator_budget_spent_usd", budget="builders",
                         period="month") == pytest.approx(builders, abs=1e-12)
    assert harness.value("orchestrator_budget_period_end_timestamp_seconds", budget="builders",
                         period="month") == month_end
    harness.restart()
    assert harness.value("orchestrator_budget_spent_usd", budget="daily", period="day") == \
        pytest.approx(3.3, abs=1e-12)
    assert harness.value("orchestrator_budget_limit_usd", budget="weekly-opus",
                         period="week") == 50


def test_calendar_periods_are_utc_days_iso_weeks_and_months():
    moment = 1_795_000_000.0  # 2026-11-18T09:46:40Z, a Wednesday
    assert period_bounds("day", moment) == (1_794_960_000.0, 1_795_046_400.0)
    assert period_bounds("week", moment) == (1_794_787_200.0, 1_795_392_000.0)
    assert period_bounds("month", moment) == (1_793_491_200.0, 1_796_083_200.0)


def test_steps_give_durations_outcomes_and_retries_per_workflow(harness: Harness):
    start = time.time() - 100
    harness.send({"type": "workflow.started", "run_id": "r", "workflow": "release",
                  "timestamp": start},
                 {"type": "step.started", "run_id": "r", "step_id": "s", "step": "build",
                  "agent": "BUILDER", "timestamp": start},
                 {"type": "step.retried", "run_id": "r", "step_id": "s", "timestamp": start + 10},
                 {"type": "step.completed", "run_id": "r", "step_id": "s",
                  "timestamp": start + 13},
                 {"type": "workflow.completed", "run_id": "r", "timestamp": start + 20})
    step = {"source": "default", "workflow": "release", "step": "build", "agent": "BUILDER"}
    assert harness.value("orchestrator_step_retries_total", **step) == 1
    assert harness.value("orchestrator_steps_total", **step, status="completed") == 1
    assert harness.value("orchestrator_step_duration_seconds_sum", **step) == 3.0
    assert harness.value("orchestrator_workflow_run_duration_seconds_sum", source="default",
                         workflow="release", status="completed") == 20.0
    assert harness.value("orchestrator_workflow_runs_active", source="default",
                         workflow="release") == 0


def test_counters_are_restored_from_the_ledger_not_replayed(harness: Harness):
    harness.send(created("a", "BUILDER"),
                 {"type": "agent.usage", "agent_id": "a", "cost_usd": 0.3, "context_tokens": 7},
                 {"type": "task.submitted", "task_id": "t"})
    before = harness.metrics()
    harness.restart()
    after = harness.metrics()
    fleet = {key: value for key, value in before.items()
             if key[0].startswith("orchestrator_") and not key[0].startswith("orchestrator_exp")}
    assert fleet and all(after.get(key) == value for key, value in fleet.items())


def test_the_callback_counts_invalid_events_as_rejected_unless_strict(harness: Harness):
    lenient = MonitorCallback(harness.exporter.pipeline)
    lenient("agent_usage", {"agentId": "a", "inputTokens": -3})
    assert lenient.rejected == 1
    assert harness.value("orchestrator_exporter_events_rejected_total", reason="invalid") == 1
    with pytest.raises(ValueError, match="input_tokens"):
        harness.callback("agent_usage", {"agentId": "a", "inputTokens": -3})


def test_a_source_s_own_cost_is_counted_and_audited_against_the_table(harness: Harness):
    harness.send(created("s", "BUILDER", "claude-opus-4-6"),
                 # the Python orchestrator's dashboard style: a cost that ignores cache tokens
                 {"type": "agent.usage", "agent_id": "s", "input_tokens": 1_000,
                  "output_tokens": 1_000, "cache_read_tokens": 1_000_000, "cost_usd": 0.03},
                 created("u", "BUILDER", "acme-9"),
                 {"type": "agent.usage", "agent_id": "u", "input_tokens": 5, "cost_usd": 0.5})
    labels = {"source": "default", "model": "claude-opus-4-6"}
    assert harness.value("orchestrator_cost_usd_total", role="BUILDER", task_type="none",
                         workflow="none", **labels) == 0.03
    assert harness.value("orchestrator_cost_reported_usd_total", **labels) == 0.03
    # $5 / $25 / $0.50 per million: 0.005 + 0.025 + 0.5
    assert harness.value("orchestrator_cost_computed_usd_total", **labels) == 0.53
    # An unpriced model has nothing to audit against.
    assert harness.value("orchestrator_cost_reported_usd_total", source="default",
                         model="acme-9") is None


def test_a_stream_with_1h_writes_long_prompts_and_a_price_change_costs_what_the_hand_says(
        harness: Harness):
    before, after = 1_791_288_000.0, 1_791_460_800.0  # 2026-10-06 and 2026-10-08, noon UTC

    def usage(agent_id: str, at: float, **tokens: int) -> dict[str, object]:
        return {"type": "agent.usage", "agent_id": agent_id, "timestamp": at, **tokens}

    harness.send(
        created("p", "BUILDER", "claude-sonnet-5-5"),
        # cache hits $0.20 before 2026-10-07, $0.10 from then on; input $2, output $10
        usage("p", before, cache_read_tokens=1_000_000, input_tokens=10_000),  # 0.20 + 0.02
        usage("p", after, cache_read_tokens=1_000_000, output_tokens=10_000),  # 0.10 + 0.10
        created("q", "BUILDER", "claude-opus-5-5"),
        # 5-minute writes $5, 1-hour writes $8, input $4
        usage("q", after, cache_creation_tokens=30_000, cache_creation_1h_tokens=20_000,
              input_tokens=1_000),  # 0.05 + 0.16 + 0.004
        usage("q", after, cache_creation_5m_tokens=1_000_000,
              cache_creation_1h_tokens=1_000_000),  # 5 + 8
        created("r", "BUILDER", "claude-haiku-5-5"),
        usage("r", after, input_tokens=150_000, output_tokens=10_000),  # long: 0.075 + 0.025
        usage("r", after, input_tokens=50_000, output_tokens=10_000),  # short: 0.005 + 0.005
    )
    metrics = harness.metrics()
    total = sum(value for (name, _labels), value in metrics.items()
                if name == "orchestrator_cost_usd_total")
    assert round(total, 9) == 13.744
    writes = sum(value for (name, labels), value in metrics.items()
                 if name == "orchestrator_tokens_total" and ("type", "cache_creation") in labels)
    assert writes == 30_000 + 2_000_000


def test_batch_fast_mode_and_us_only_inference_multiply_the_price(harness: Harness):
    # Opus 5.5 ($4 input, $0.20 cache hits, $20 output): 1,000 input, 100,000 cache reads and
    # 1,000 output are 0.004 + 0.02 + 0.02 = $0.044; fast mode doubles it (pricing page, Fast
    # mode: $8 / $40), US-only inference multiplies it by 1.1, the Batch API halves it.
    tokens = {"input_tokens": 1_000, "cache_read_tokens": 100_000, "output_tokens": 1_000}
    expected = {"standard": 0.044, "fast": 0.088, "us": 0.0484, "batch": 0.022,
                "fast-us": 0.0968, "priority": 0.044}
    options = {"standard": {}, "fast": {"speed": "fast"}, "us": {"inference_geo": "us"},
               "batch": {"service_tier": "batch"},
               "fast-us": {"speed": "fast", "inferenceGeo": "us"},
               "priority": {"service_tier": "priority"}}
    for name, extra in options.items():
        harness.send(created(name, "BUILDER", "claude-opus-5-5", task_id=name),
                     {"type": "agent.usage", "agent_id": name, **tokens, **extra})
    with harness.exporter.lock:
        costs = {name: harness.exporter.state.agents[("default", name)].cost_nano / 1e9
                 for name in options}
    assert costs == pytest.approx(expected, abs=1e-12)
    # Fast mode on a model without it (Opus 4.6 runs at standard speed and rates).
    harness.send(created("slow", "BUILDER", "claude-opus-4-6"),
                 {"type": "agent.usage", "agent_id": "slow", "input_tokens": 1_000_000,
                  "speed": "fast"})
    with harness.exporter.lock:
        assert harness.exporter.state.agents[("default", "slow")].cost_nano == 5 * 10**9


def test_a_failed_checkpoint_gives_its_changes_back_to_the_next(harness: Harness,
                                                                 monkeypatch: pytest.MonkeyPatch):
    harness.send(created("c", "BUILDER", "claude-opus-4-6"),
                 {"type": "agent.usage", "agent_id": "c", "input_tokens": 1_000_000})
    ledger = harness.exporter.ledger
    real_write = ledger.write_checkpoint
    failures = []

    def failing_once(groups: object) -> None:
        if not failures:
            failures.append(1)
            raise OSError("disk full")
        real_write(groups)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "write_checkpoint", failing_once)
    harness.send({"type": "agent.usage", "agent_id": "c", "input_tokens": 1_000_000})
    with pytest.raises(OSError):
        harness.exporter.pipeline.synced()  # the changes of that event are in no row now
    harness.send({"type": "agent.usage", "agent_id": "c", "input_tokens": 1_000_000})
    harness.exporter.pipeline.synced()  # a later checkpoint succeeds: it must carry them
    labels = {"source": "default", "role": "BUILDER", "model": "claude-opus-4-6",
              "task_type": "none", "workflow": "none"}
    assert harness.value("orchestrator_cost_usd_total", **labels) == 15.0
    harness.restart()  # loads that checkpoint: every event counted once
    assert harness.value("orchestrator_cost_usd_total", **labels) == 15.0
    assert harness.value("orchestrator_tokens_total", **labels, type="input") == 3_000_000


def _ended_episode(number: int, at: float) -> list[dict[str, object]]:
    task, run, agent = f"t{number}", f"r{number}", f"a{number}"
    return [{"type": "task.submitted", "task_id": task, "task_type": "feature"},
            {"type": "task.started", "task_id": task},
            {"type": "workflow.started", "run_id": run, "workflow": "release"},
            {"type": "agent.created", "agent_id": agent, "role": "BUILDER", "task_id": task},
            {"type": "step.started", "run_id": run, "step_id": "s0", "agent_id": agent},
            {"type": "step.completed", "run_id": run, "step_id": "s0", "agent_id": agent},
            {"type": "agent.deleted", "agent_id": agent},
            {"type": "workflow.completed", "run_id": run},
            {"type": "task.completed", "task_id": task}]


def test_what_memory_holds_of_ended_entities_is_capped_however_long_the_history():
    state = FleetState(prices=load_price_table(), budgets=(), label_value_limit=100)
    at = time.time() - 3600
    for number in range(ENDED_MEMORY + 500):
        for raw in _ended_episode(number, at):
            state.apply(validate_one({**raw, "timestamp": at}, at))
    assert len(state.ended_tasks) == len(state.ended_runs) == ENDED_MEMORY
    assert len(state.deleted_agents) == DELETED_AGENT_MEMORY
    assert not (state.agents or state.live or state.tasks or state.task_agents or state.runs
                or state.steps or state.run_steps)
    # The newest are the ones remembered: a repeated end of a recent task counts nothing.
    ended = state.families.tasks.values[("default", "feature", "completed", "excluded")]
    state.apply(validate_one({"type": "task.completed", "task_id": f"t{ENDED_MEMORY + 499}",
                              "timestamp": at}, at))
    assert state.families.tasks.values[("default", "feature", "completed", "excluded")] == ended
