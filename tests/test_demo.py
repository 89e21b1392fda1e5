"""The demo fleet: reproducible, valid, in both dialects, calm when normal, loud per scenario.

Simulations run on simulated time (no sleeping). Thresholds are those of
prometheus/rules/alerts.yml, checked on the events themselves.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import orjson
import pytest
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from support import ExporterFactory
from test_client import serve_stand_in

from exporter.claude_code.hooks import HookReceiver, parse_hook
from exporter.config import parse_config
from exporter.demo import (
    CONTEXT_LIMIT_TOKENS,
    DEMO_CONFIG_YAML,
    SCENARIO_START_SECONDS,
    SCENARIOS,
    DemoEvent,
    DemoFleet,
    main_demo,
    run_demo,
)
from exporter.demo_claude_code import HOOKS_PATH, SESSIONS, ClaudeCodeSessions, Delivery
from exporter.events import AGENT_STATUSES, EVENT_TYPES, LOG_LEVELS, Event, validate_batch
from exporter.otlp.claude_code import ClaudeCodeReceiver, Defaults
from exporter.pricing import NANO_PER_USD, load_price_table, usd_to_nano
from exporter.state import FleetState

START = 1_790_000_000.0  # 2026-09-21T14:13:20Z
# Ids of the events in the real orchestrators' shapes: `{source}-{tag}-r{n}` (and `#k`).
REAL_SOURCE_ID = re.compile(r"-r\d+(#\d+)?$")
MINUTE = 60.0


@dataclass(frozen=True)
class Run:
    fleet: DemoFleet
    raw: list[DemoEvent]
    events: list[Event]  # canonical form, as the exporter reads them
    real: list[Event]  # translated from the real orchestrators' shapes

    def of_type(self, *types: str) -> list[Event]:
        return [event for event in self.events if event.type in types]

    def at(self, seconds: float) -> float:
        return START + seconds


def simulate(*, seed: int = 42, rate: float = 20.0, scenario: str | None = None,
             minutes: float, tick: float = 1.0) -> Run:
    fleet = DemoFleet(seed=seed, rate=rate, scenario=scenario, start_time=START)
    raw: list[DemoEvent] = []
    ticks = int(minutes * MINUTE / tick)
    for index in range(1, ticks + 1):
        raw.extend(fleet.step(START + index * tick))
    events, problems = validate_batch(raw, START + ticks * tick + 1)
    assert problems == []
    return split_run(fleet, raw, events)


def split_run(fleet: DemoFleet, raw: list[DemoEvent], events: list[Event]) -> Run:
    """The real orchestrators' shapes (exporter/demo_sources.py) are checked on their own
    (test_the_real_sources_count_exactly): the other tests read the canonical fleet's events."""
    return Run(fleet, raw, [event for event in events if not is_real_source(event)],
               [event for event in events if is_real_source(event)])


def is_real_source(event: Event) -> bool:
    return event.id is not None and REAL_SOURCE_ID.search(event.id) is not None


@cache
def cached(scenario: str | None, minutes: float, rate: float = 20.0) -> Run:
    """Simulations shared by several tests (they only read them)."""
    return simulate(scenario=scenario, minutes=minutes, rate=rate)


NORMAL_RATE, NORMAL_MINUTES, STEADY_FROM = 15.0, 40, 15  # the shared normal simulation
STEADY_SECONDS = (NORMAL_MINUTES - STEADY_FROM) * MINUTE


def normal() -> Run:
    return cached(None, NORMAL_MINUTES, NORMAL_RATE)


def costs(run: Run) -> list[tuple[float, float, Event]]:
    """(timestamp, USD, usage event) as the exporter prices them: cost_usd, else the table."""
    prices = load_price_table()
    result = []
    counted: dict[str, float] = {}  # running totals: what is counted per agent so far
    for event in run.of_type("agent.usage"):
        fields = event.fields
        if fields.get("totals"):
            agent_id = fields["agent_id"]
            increase = max(0.0, fields.get("cost_usd", 0.0) - counted.get(agent_id, 0.0))
            counted[agent_id] = counted.get(agent_id, 0.0) + increase
            result.append((event.timestamp, increase, event))
            continue
        usd = fields.get("cost_usd")
        if usd is None:
            price = prices.lookup(fields["model"])
            assert price is not None, fields["model"]
            usd = price.cost_nano(fields.get("input_tokens", 0), fields.get("output_tokens", 0),
                                  fields.get("cache_read_tokens", 0),
                                  fields.get("cache_creation_tokens", 0)) / NANO_PER_USD
        result.append((event.timestamp, usd, event))
    return result


def max_in_window(times: Iterable[float], window: float) -> int:
    ordered = sorted(times)
    return max((index + 1 - bisect.bisect_right(ordered, moment - window)
                for index, moment in enumerate(ordered)), default=0)


def first_time_reaching(times: Iterable[float], window: float, count: int) -> float | None:
    ordered = sorted(times)
    for index, moment in enumerate(ordered):
        if index + 1 - bisect.bisect_right(ordered, moment - window) >= count:
            return moment
    return None


def grouped(events: Iterable[Event], key: Callable[[Event], object]) -> dict[object, list[float]]:
    groups: dict[object, list[float]] = collections.defaultdict(list)
    for event in events:
        groups[key(event)].append(event.timestamp)
    return groups


def run_workflows(run: Run) -> dict[str, str]:
    return {event.fields["run_id"]: event.fields["workflow"]
            for event in run.of_type("workflow.started")}


def task_types(run: Run) -> dict[str, str]:
    return {event.fields["task_id"]: event.fields.get("task_type", "unknown")
            for event in run.of_type("task.submitted")}


def agent_task_types(run: Run) -> dict[str, str]:
    types = task_types(run)
    return {event.fields["agent_id"]: types.get(event.fields.get("task_id", ""), "none")
            for event in run.of_type("agent.created")}


def error_times(run: Run) -> dict[object, list[float]]:
    """Errors by error_type, as orchestrator_errors_total counts them."""
    failures = [event for event in run.events
                if event.type in ("task.failed", "workflow.failed", "step.failed")
                or (event.type == "agent.tool_call" and event.fields["outcome"] == "error")]
    return grouped(failures, lambda event: event.fields.get("error_type", "unspecified"))


def task_failure_ratios(run: Run, minimum_ended: int = 10) -> list[tuple[float, float]]:
    """(time, failed/ended share) of each task type over 30 minutes with at least 10 ended."""
    types = task_types(run)
    ended = run.of_type("task.completed", "task.failed")
    ratios = []
    for task_type in set(types.values()):
        mine = sorted((event.timestamp, event.type == "task.failed") for event in ended
                      if types[event.fields["task_id"]] == task_type)
        for index, (moment, _) in enumerate(mine):
            window = [failed for other, failed in mine[: index + 1] if other > moment - 1800]
            if len(window) >= minimum_ended:
                ratios.append((moment, sum(window) / len(window)))
    return sorted(ratios)


def context_shares(run: Run) -> dict[str, list[tuple[float, float]]]:
    shares: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for event in run.of_type("agent.usage"):
        if "context_tokens" in event.fields:
            shares[event.fields["agent_id"]].append(
                (event.timestamp, event.fields["context_tokens"] / CONTEXT_LIMIT_TOKENS))
    return shares


def agents_silent_while_running(run: Run, now: float) -> dict[str, float]:
    """Live agents whose last status is running, with the seconds since their last event."""
    last: dict[str, float] = {}
    status: dict[str, str] = {}
    for event in run.events:
        agent_id = event.fields.get("agent_id")
        if agent_id is None or not event.type.startswith("agent."):
            continue
        last[agent_id] = event.timestamp
        if event.type == "agent.status_changed":
            status[agent_id] = event.fields["status"]
        elif event.type == "agent.deleted":
            status[agent_id] = "deleted"
    return {agent_id: now - moment for agent_id, moment in last.items()
            if status.get(agent_id) == "running"}


def max_gap_while_running(run: Run) -> float:
    """The longest time a running agent went without any event of its own."""
    last: dict[str, float] = {}
    running: set[str] = set()
    worst = 0.0
    for event in run.events:
        agent_id = event.fields.get("agent_id")
        if agent_id is None or not event.type.startswith("agent."):
            continue
        if agent_id in running:
            worst = max(worst, event.timestamp - last[agent_id])
        last[agent_id] = event.timestamp
        if event.type == "agent.status_changed":
            (running.add if event.fields["status"] == "running" else running.discard)(agent_id)
        elif event.type == "agent.deleted":
            running.discard(agent_id)
    return worst


def budget_limits() -> dict[str, float]:
    config = parse_config(yaml.safe_load(DEMO_CONFIG_YAML))
    return {budget.name: budget.limit_usd for budget in config.budgets}


# Reproducibility and the contract.


def test_same_seed_and_start_give_the_same_events() -> None:
    first, again = simulate(minutes=3), simulate(minutes=3)
    assert first.raw == again.raw
    assert len(first.raw) > 1000
    other = simulate(minutes=3, seed=7)
    assert [event["type"] for event in other.raw] != [event["type"] for event in first.raw]


def test_events_do_not_depend_on_how_time_is_cut_into_ticks() -> None:
    every_second = simulate(minutes=3, tick=1.0).raw
    assert simulate(minutes=3, tick=7.5).raw == every_second
    fleet = DemoFleet(seed=42, start_time=START)
    assert fleet.step(START + 180) == every_second


def test_ids_are_unique_and_differ_for_another_start_time() -> None:
    run = normal()
    ids = [event["id"] for event in run.raw]
    assert len(set(ids)) == len(ids)
    later = DemoFleet(seed=42, start_time=START + 3600)
    later_ids = {event["id"] for event in later.step(START + 3600 + 60)}
    assert later_ids and not later_ids & set(ids)


def test_every_type_status_and_log_level_appears_within_two_minutes() -> None:
    run = simulate(minutes=2)
    assert {event.type for event in run.events + run.real} == set(EVENT_TYPES)
    statuses = {event.fields["status"] for event in run.of_type("agent.status_changed")}
    assert statuses == set(AGENT_STATUSES)
    assert {event.fields["level"] for event in run.of_type("log.entry")} == set(LOG_LEVELS)
    submitted = run.of_type("task.submitted")
    # a dashboard task's first rows come before its plan: analyst not yet known
    assert {event.fields["analyst"] for event in submitted if "analyst" in event.fields} == \
        {True, False}
    assert {event.fields["mode"] for event in submitted} == {"sequential", "parallel"}


def test_runs_of_every_workflow_end_within_the_first_minute_and_a_half() -> None:
    # The warm start's runs: `serve --demo` fills the run-duration panels, which need two ends
    # of a workflow, within two minutes (tests/test_dashboards_live.py).
    run = simulate(minutes=1.5)
    workflows = run_workflows(run)
    ended = collections.Counter(workflows[event.fields["run_id"]] for event in run.of_type(
        "workflow.completed", "workflow.failed", "workflow.cancelled"))
    assert set(ended) == {"ci-pipeline", "code-review", "release", "incident-triage",
                          "docs-sync"}
    assert max(ended.values()) >= 2


def test_the_fleet_has_every_role_several_models_and_cache_tokens() -> None:
    run = normal()
    created = run.of_type("agent.created")
    assert {event.fields["role"] for event in created} == {
        "ANALYST", "PLANNER", "BUILDER", "TESTER", "REVIEWER"}
    models = {event.fields["model"] for event in created}
    assert {"claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5",
            "claude-sonnet-4-5-20250929"} <= models
    assert all(event.fields["context_limit_tokens"] == CONTEXT_LIMIT_TOKENS for event in created)
    usage = run.of_type("agent.usage")
    with_cost = sum(1 for event in usage if "cost_usd" in event.fields)
    assert 0.1 < with_cost / len(usage) < 0.3  # mostly priced by the exporter
    assert sum(event.fields["cache_read_tokens"] for event in usage) > \
        sum(event.fields["cache_creation_tokens"] for event in usage)
    assert {event.fields["tool"] for event in run.of_type("agent.tool_call")} >= {
        "Read", "Edit", "Bash", "Grep", "WebSearch"}
    assert {"success", "error"} == {event.fields["outcome"]
                                    for event in run.of_type("agent.tool_call")}
    assert set(task_types(run).values()) == {
        "feature_implementation", "bug_fix", "refactoring", "documentation", "research"}
    assert {"simple", "complex"} == {event.fields["complexity"]
                                     for event in run.of_type("task.submitted")}


def test_both_dialects_are_used() -> None:
    raw = normal().raw
    monitor = [event for event in raw if "." not in str(event["type"])]
    dotted = [event for event in raw if "." in str(event["type"]) and "data" not in event]
    orchestr8 = [event for event in raw if "data" in event]
    assert {"agent_created", "status_changed", "agent_usage", "tool_call", "agent_deleted",
            "task_submitted", "log_entry"} <= {event["type"] for event in monitor}
    assert any("agentId" in event and "inputTokens" in event for event in monitor)
    assert not any("agent_id" in event for event in monitor)
    assert any("agent_id" in event and "input_tokens" in event for event in dotted)
    assert not any("agentId" in event for event in dotted)
    steps = [event for event in orchestr8 if str(event["type"]).startswith("step.")]
    assert steps and all({"workflowId", "executionId", "stepId"} <= set(event)
                         for event in steps)
    assert isinstance(orchestr8[0]["timestamp"], str)
    for part in (monitor, dotted, orchestr8):
        assert len(part) > 0.05 * len(raw)


def test_rate_is_the_mean_number_of_events_per_second() -> None:
    run = normal()
    steady = [event for event in run.events if event.timestamp > run.at(STEADY_FROM * MINUTE)]
    assert len(steady) / STEADY_SECONDS == pytest.approx(NORMAL_RATE, rel=0.2)
    quiet = DemoFleet(seed=3, rate=8, start_time=START)
    quiet.step(START + 15 * MINUTE)
    assert len(quiet.step(START + 45 * MINUTE)) / (30 * MINUTE) == pytest.approx(8, rel=0.2)


def test_memory_stays_bounded() -> None:
    fleet = DemoFleet(seed=1, rate=3, start_time=START)
    created, live = 0, []
    for ten_minutes in range(1, 19):
        events = fleet.step(START + ten_minutes * 600)
        created += sum(1 for event in events if event["type"] in ("agent.created",
                                                                  "agent_created"))
        live.append(fleet.live_agents)
    assert created > 800
    assert max(live) < 100  # ended tasks, runs and agents are forgotten


def test_shutdown_leaves_nothing_running_and_deletes_every_agent() -> None:
    fleet = DemoFleet(seed=5, scenario="stuck-agent", start_time=START)
    raw: list[DemoEvent] = []
    for second in range(1, 301):
        raw.extend(fleet.step(START + second))
    raw.extend(fleet.shutdown(START + 301))
    events, problems = validate_batch(raw, START + 400)
    assert problems == []
    run = split_run(fleet, raw, events)
    created = {event.fields["agent_id"] for event in run.of_type("agent.created")}
    deleted = {event.fields["agent_id"] for event in run.of_type("agent.deleted")}
    assert created == deleted
    assert agents_silent_while_running(run, START + 301) == {}
    ended = {event.fields["task_id"] for event in run.of_type(
        "task.completed", "task.failed", "task.cancelled")}
    assert set(task_types(run)) == ended
    runs_ended = {event.fields["run_id"] for event in run.of_type(
        "workflow.completed", "workflow.failed", "workflow.cancelled")}
    assert set(run_workflows(run)) == runs_ended
    assert fleet.step(START + 400) == [] and fleet.live_agents == 0


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        DemoFleet(scenario="meteor-strike")
    with pytest.raises(ValueError, match="rate"):
        DemoFleet(rate=0)


# The normal fleet stays below every alert threshold.


def test_the_normal_fleet_stays_below_every_failure_alert() -> None:
    run = normal()
    workflows = run_workflows(run)
    failed_runs = grouped(run.of_type("workflow.failed"),
                          lambda event: workflows[event.fields["run_id"]])
    assert failed_runs  # failures happen ...
    assert max(max_in_window(times, 900) for times in failed_runs.values()) < 3  # ... rarely
    retries = grouped(run.of_type("step.retried"),
                      lambda event: (workflows[event.fields["run_id"]], event.fields["step"]))
    assert retries
    assert max(max_in_window(times, 900) for times in retries.values()) < 5
    errors = error_times(run)
    assert len(errors) >= 5
    assert max(max_in_window(times, 900) for times in errors.values()) < 5
    assert "unspecified" not in errors
    assert max(ratio for _, ratio in task_failure_ratios(run)) <= 0.25


def test_the_normal_fleet_has_no_stuck_agent_and_no_full_context() -> None:
    run = normal()
    assert max_gap_while_running(run) < 5 * MINUTE
    shares = [share for points in context_shares(run).values() for _, share in points]
    assert 0.6 < max(shares) <= 0.8


def test_the_normal_fleet_stays_within_the_demo_budgets() -> None:
    limits = budget_limits()
    assert set(limits) == {"fleet-daily", "fleet-monthly", "analyst-weekly", "research-daily"}
    run = normal()
    spent = costs(run)
    at_default_rate = 20.0 / NORMAL_RATE  # the budgets are sized for the default rate
    steady = [usd for moment, usd, _ in spent if moment > run.at(STEADY_FROM * MINUTE)]
    per_day = sum(steady) / STEADY_SECONDS * 86_400 * at_default_rate
    assert per_day < 0.5 * limits["fleet-daily"]
    assert per_day * 31 < 0.5 * limits["fleet-monthly"]
    roles = {event.fields["agent_id"]: event.fields["role"] for event in run.of_type(
        "agent.created")}
    analyst = sum(usd for moment, usd, event in spent if moment > run.at(STEADY_FROM * MINUTE)
                  and roles[event.fields["agent_id"]] == "ANALYST")
    assert analyst / STEADY_SECONDS * 86_400 * 7 * at_default_rate < 0.5 * limits[
        "analyst-weekly"]
    # research tasks come at a fixed cadence whatever the rate: a day at a low rate shows it.
    day = simulate(rate=0.05, minutes=24 * 60, seed=9)
    research = agent_task_types(day)
    research_spend = sum(usd for _, usd, event in costs(day)
                         if research[event.fields["agent_id"]] == "research")
    assert 0.2 * limits["research-daily"] < research_spend < 0.6 * limits["research-daily"]


def test_the_normal_fleet_is_not_a_cost_anomaly_against_its_own_median() -> None:
    run = normal()
    per_minute: dict[int, float] = collections.defaultdict(float)
    for moment, usd, _ in costs(run):
        per_minute[int((moment - START) // MINUTE)] += usd
    steady = [per_minute[minute] for minute in range(STEADY_FROM, NORMAL_MINUTES)]
    median = sorted(steady)[len(steady) // 2]
    assert max(steady) < 2 * median


# Each scenario produces exactly the condition its alert checks.


def test_context_pressure_keeps_an_agent_above_95_percent() -> None:
    run = cached("context-pressure", 15, rate=10)
    pressed = {agent_id: points for agent_id, points in context_shares(run).items()
               if max(share for _, share in points) > 0.95}
    assert len(pressed) == 1
    ((agent_id, points),) = pressed.items()
    first = next(moment for moment, share in points if share > 0.95)
    assert first - START < 3 * MINUTE  # OrchestratorAgentContextWindowCritical: no `for`
    after = [(moment, share) for moment, share in points if moment >= first]
    assert all(share > 0.95 for _, share in after)
    assert after[-1][0] - first > 10 * MINUTE  # ...WindowHigh holds 5 minutes above 80%
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(after)]
    assert max(gaps) < 2 * MINUTE  # the agent keeps working: it is not stuck
    others = [share for other, points in context_shares(run).items() if other != agent_id
              for _, share in points]
    assert max(others) <= 0.8


def test_stuck_agent_leaves_a_running_agent_silent_for_ten_minutes() -> None:
    minutes = SCENARIO_START_SECONDS["stuck-agent"] / MINUTE + 11.5
    run = cached("stuck-agent", minutes, rate=10)
    silent = agents_silent_while_running(run, run.at(minutes * MINUTE))
    stuck = {agent_id: seconds for agent_id, seconds in silent.items() if seconds > 600}
    assert len(stuck) == 1
    ((agent_id, _),) = stuck.items()
    deleted = {event.fields["agent_id"] for event in run.of_type("agent.deleted")}
    assert agent_id not in deleted  # live: it still has per-agent series


def test_budget_overrun_spends_research_daily_within_minutes_then_stops() -> None:
    limit = budget_limits()["research-daily"]
    run = cached("budget-overrun", 12, rate=10)
    research = agent_task_types(run)
    spend = [(moment, usd) for moment, usd, event in costs(run)
             if research[event.fields["agent_id"]] == "research"]
    total, reached = 0.0, None
    for moment, usd in spend:
        total += usd
        if reached is None and total >= limit:
            reached = moment
    assert reached is not None and reached - START < 6 * MINUTE
    assert 1.5 * limit <= total < 2 * limit  # the runaway is stopped: silent until tomorrow
    assert run.of_type("task.cancelled")


def test_cost_spike_is_three_times_normal_spend_after_a_normal_warm_up() -> None:
    spike = SCENARIO_START_SECONDS["cost-spike"]
    assert spike >= 15 * MINUTE  # the warm-up must outlast the anomaly alert's `for`
    run = cached("cost-spike", spike / MINUTE + 12, rate=6)
    spent = costs(run)

    def rate_between(begin: float, end: float) -> float:
        return sum(usd for moment, usd, _ in spent
                   if run.at(begin) < moment <= run.at(end)) / (end - begin)

    before = rate_between(spike - 10 * MINUTE, spike)
    after = rate_between(spike + 2 * MINUTE, spike + 12 * MINUTE)
    assert after > 3 * before
    assert rate_between(spike - 5 * MINUTE, spike) < 1.5 * rate_between(
        spike - 10 * MINUTE, spike - 5 * MINUTE)  # a steady warm-up


def test_failure_burst_trips_every_failure_threshold_within_minutes() -> None:
    start = SCENARIO_START_SECONDS["failure-burst"]
    run = cached("failure-burst", start / MINUTE + 16, rate=10)
    workflows = run_workflows(run)
    deadline = run.at(start + 5 * MINUTE)
    failed_runs = grouped(run.of_type("workflow.failed"),
                          lambda event: workflows[event.fields["run_id"]])
    assert min(first_time_reaching(times, 900, 3) or float("inf")
               for times in failed_runs.values()) < deadline
    retries = grouped(run.of_type("step.retried"),
                      lambda event: (workflows[event.fields["run_id"]], event.fields["step"]))
    assert min(first_time_reaching(times, 900, 5) or float("inf")
               for times in retries.values()) < deadline
    assert min(first_time_reaching(times, 900, 5) or float("inf")
               for times in error_times(run).values()) < deadline
    first_above = next((moment for moment, ratio in task_failure_ratios(run) if ratio > 0.25),
                       None)
    assert first_above is not None and first_above < run.at(start + 10 * MINUTE)


# Driving an exporter.


def test_run_demo_ticks_until_stopped_then_winds_down() -> None:
    stop = threading.Event()
    batches: list[list[DemoEvent]] = []
    now = [START]

    def clock() -> float:
        now[0] += 1.0
        if now[0] >= START + 90:
            stop.set()
        return now[0]

    run_demo(batches.append, seed=1, rate=20, scenario=None, stop=stop, tick_seconds=0,
             clock=clock)
    assert len(batches) > 60 and all(batches)
    raw = [event for batch in batches for event in batch]
    events, problems = validate_batch(raw, START + 200)
    assert problems == []
    created = {event.fields["agent_id"] for event in events if event.type == "agent.created"}
    assert created == {event.fields["agent_id"] for event in events
                       if event.type == "agent.deleted"}


def test_main_demo_sends_valid_events_then_the_wind_down() -> None:
    with serve_stand_in(validate=True) as exporter:  # the exporter's own validator
        assert main_demo(exporter.url, "token", seed=3, rate=40, scenario=None,
                         duration=1.2) == 0
    raw = [event for body in exporter.bodies for event in body]
    events, problems = validate_batch(raw, START * 2)
    assert problems == [] and len(events) > 3
    assert all(headers["Authorization"] == "Bearer token" for headers in exporter.headers)
    run = split_run(DemoFleet(), raw, events)
    assert set(task_types(run)) == {event.fields["task_id"] for event in run.of_type(
        "task.completed", "task.failed", "task.cancelled")}  # the wind-down was delivered


def test_main_demo_stops_at_the_first_refusal() -> None:
    with serve_stand_in() as exporter:
        exporter.statuses = [401] * 100
        began = time.monotonic()
        assert main_demo(exporter.url, "wrong", seed=3, rate=40, scenario=None,
                         duration=30) == 1
        assert time.monotonic() - began < 4
        assert len(exporter.bodies) <= 3


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_yields_valid_events(scenario: str) -> None:
    fleet = DemoFleet(seed=2, rate=5, scenario=scenario, start_time=START,
                      scenario_start=10.0)
    raw = fleet.step(START + 6 * MINUTE)
    raw += fleet.shutdown(START + 6 * MINUTE + 1)
    events, problems = validate_batch(raw, START + 7 * MINUTE)
    assert problems == [] and len(events) > 1000


def test_the_real_sources_count_exactly() -> None:
    """The demo's share in the real orchestrators' shapes, applied by the fleet state: each
    agent's billed total counts once beside the dashboard's estimate, bus runs correlate."""
    run = simulate(minutes=10)
    state = FleetState(prices=load_price_table(), budgets=(), label_value_limit=100)
    events, _ = validate_batch(run.raw, START + 11 * MINUTE)  # in the order they were sent
    state.apply_all(events)
    families = state.families
    billed = {event.fields["agent_id"]: event.fields["cost_usd"] for event in run.real
              if event.type == "agent.usage" and event.dialect == "orchestrator_monitor"}
    assert len(billed) >= 10
    unknown_model = sum(value for labels, value in families.cost.values.items()
                        if labels[2] == "unknown")
    assert unknown_model == sum(usd_to_nano(cost) for cost in billed.values())
    assert sum(families.uncorrelated.values.values()) == 0
    assert families.ignored.values[("orchestr8", "retry.attempted")] > 0
    runs = {labels[2]: value for labels, value in families.runs.values.items()
            if labels[1] == "nightly-digest"}
    started = families.runs_started.values[("demo", "nightly-digest")]
    assert runs["completed"] >= 5 and runs["cancelled"] >= 1
    assert started - sum(runs.values()) in (0, 1)  # one may still be running
    bus_steps: collections.Counter[str] = collections.Counter()
    for labels, value in families.steps.values.items():
        if labels[1] == "nightly-digest":
            bus_steps[labels[4]] += value
    assert bus_steps["completed"] == 3 * runs["completed"] + runs["cancelled"]
    assert bus_steps["cancelled"] == runs["cancelled"]
    python_tasks = [event for event in run.real if event.type == "task.completed"]
    assert python_tasks and all(event.dialect == "orchestrator_dashboard"
                                for event in python_tasks)


# Claude Code sessions (exporter/demo_claude_code.py): what they send, through the real receivers.

CLAUDE_CODE_FAMILIES = ("code_lines", "code_commits", "code_pull_requests", "active_time",
                        "edit_decisions")


def received(deliveries: list[Delivery], at: float) -> list[dict[str, object]]:
    """The canonical events the exporter's OTLP and hook receivers make of the requests, in
    order (the hooks' role and source from the headers, as the hooks router reads them)."""
    otlp = ClaudeCodeReceiver(Defaults(source="default", role="CLAUDE_CODE"))
    hooks = HookReceiver()
    raws: list[dict[str, object]] = []
    for delivery in deliveries:
        if delivery.path == HOOKS_PATH:
            headers = dict(delivery.headers)
            raws += hooks.translate(parse_hook(orjson.loads(delivery.body)),
                                    role=headers.get("X-Orchestrator-Role", "CLAUDE_CODE"),
                                    source=headers["X-Orchestrator-Source"], received=at)
            continue
        assert delivery.content_type == "application/x-protobuf"
        if delivery.path == "/v1/metrics":
            translation = otlp.metrics(ExportMetricsServiceRequest.FromString(delivery.body), at)
        else:
            assert delivery.path == "/v1/logs"
            translation = otlp.logs(ExportLogsServiceRequest.FromString(delivery.body), at)
        assert translation.unused == 0  # every point and record is one Claude Code sends
        otlp.committed(translation)
        raws += translation.events
    return raws


def test_claude_code_sessions_send_every_claude_code_signal_and_end_with_the_demo() -> None:
    sessions = ClaudeCodeSessions(seed=42, start=START)
    deliveries: list[Delivery] = []
    live: list[int] = []
    for second in range(1, 16 * 60 + 1):
        deliveries += sessions.step(START + second)
        live.append(sessions.live_sessions)
    deliveries += sessions.shutdown(START + 16 * 60 + 1)
    assert sessions.step(START + 20 * 60) == [] and sessions.live_sessions == 0
    assert max(live) == SESSIONS
    events, problems = validate_batch(received(deliveries, START + 17 * 60), START + 17 * 60)
    assert problems == []
    state = FleetState(prices=load_price_table(), budgets=(), label_value_limit=100)
    state.apply_all(events)
    for name in CLAUDE_CODE_FAMILIES:  # every signal, for each role (the last one the default)
        roles = {labels[1] for labels in getattr(state.families, name).values}
        assert roles == {"BUILDER", "REVIEWER", "CLAUDE_CODE"}, name
    decisions = {labels[3] for labels in state.families.edit_decisions.values}
    assert decisions == {"accept", "reject"}
    created = {event.fields["agent_id"] for event in events if event.type == "agent.created"}
    assert len(created) > SESSIONS  # sessions ended within 16 minutes and others took over
    assert not any(agent.live for agent in state.agents.values())
    cost = sum(state.families.cost.values.values()) / NANO_PER_USD
    reported = sum(state.families.cost_reported.values.values())
    computed = sum(state.families.cost_computed.values.values())
    assert cost > 0 and reported == computed  # the price table's prices: no mispricing alert
    same = ClaudeCodeSessions(seed=42, start=START).step(START + 16 * 60)
    assert same == deliveries[:len(same)]


def test_serve_demo_sends_claude_code_sessions_over_http_and_ends_them_on_stop(
        exporter_factory: ExporterFactory) -> None:
    exporter = exporter_factory(extra_args=["--demo"])
    families = ("lines_of_code_total", "commits_total", "pull_requests_total",
                "active_time_seconds_total", "edit_decisions_total")
    deadline = time.monotonic() + 90
    while True:
        samples = exporter.metrics()
        seen = {name.removeprefix("orchestrator_claude_code_") for name, _ in samples
                if name.startswith("orchestrator_claude_code_")}
        if seen >= set(families) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert seen >= set(families)
    roles = {dict(labels)["role"] for name, labels in samples
             if name == "orchestrator_claude_code_active_time_seconds_total"}
    assert roles == {"BUILDER", "REVIEWER", "CLAUDE_CODE"}
    exporter.process.stop(timeout=15)
    # The same ledger without the demo: the sessions ended before the server stopped listening.
    again = exporter_factory(database_url=exporter.database_url)
    assert [labels for name, labels in again.metrics() if name == "orchestrator_agent_info"] == []
