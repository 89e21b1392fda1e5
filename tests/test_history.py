"""The demo's history: days of a quieter fleet replayed at a simulated clock before the live one.

`backfill_history` feeds the exporter (the sink) and writes the counters the History rules read
as OpenMetrics for promtool; `serve --demo-history` runs it before the exporter serves.
test_dashboards_live.py imports such a file into Prometheus and queries the History dashboard.
"""

from __future__ import annotations

import collections
import itertools
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from support import ExporterFactory, parse_metrics

from exporter.demo import (
    HISTORY_SCRAPE_SECONDS,
    DemoEvent,
    DemoFleet,
    HistoryLoad,
    backfill_history,
)
from exporter.events import Event, validate_batch
from exporter.metrics import MetricsRenderer
from exporter.pricing import load_price_table
from exporter.state import FleetState

DAY = 86_400.0
END = datetime(2026, 11, 30, tzinfo=UTC).timestamp()  # a Monday, midnight UTC
DAYS = 14
SAMPLE = re.compile(r"^(\w+)(\{.*\})? (\S+) (\S+)$")


@dataclass(frozen=True)
class History:
    batches: list[list[DemoEvent]]
    events: list[Event]
    openmetrics: Path

    @property
    def start(self) -> float:
        return END - DAYS * DAY


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    batches: list[list[DemoEvent]] = []
    path = tmp_path_factory.mktemp("history") / "history.om"
    sent = backfill_history(batches.append, days=DAYS, seed=7, end=END, openmetrics=path)
    assert sent == sum(len(batch) for batch in batches)
    return History(batches, _validated([event for batch in batches for event in batch]), path)


def _validated(raws: list[DemoEvent], received: float = END) -> list[Event]:
    events, problems = validate_batch(raws, received)
    assert not problems, problems[:3]
    return events


def _state_of(events: list[Event]) -> FleetState:
    state = FleetState(prices=load_price_table(), budgets=(), label_value_limit=100)
    state.apply_all(events)
    return state


def _series(path: Path) -> tuple[list[str], dict[tuple[str, str], list[tuple[float, float]]]]:
    """The file's `# TYPE` lines in order, and each series' (timestamp, value) samples, checking
    on the way that every sample belongs to the family announced above it."""
    types: list[str] = []
    series: dict[tuple[str, str], list[tuple[float, float]]] = collections.defaultdict(list)
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    family = ""
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            types.append(line)
            family = line.split()[2]
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value, timestamp = match.groups()
        assert name.startswith(family), f"{name} outside its family {family}"
        series[(name, labels or "")].append((float(timestamp), float(value)))
    return types, series


# --- the events ----------------------------------------------------------------------------


def test_the_history_covers_the_days_before_its_end_in_time_order(history: History) -> None:
    times = [event.timestamp for event in history.events]
    assert times == sorted(times)
    assert history.start <= times[0] < history.start + 60
    assert END - 6 * 3600 < times[-1] <= END  # a Sunday night is quiet
    # a day of it takes seconds, not the live fleet's 1.7 million events
    assert 1_000 * DAYS < len(times) < 20_000 * DAYS
    assert all(len(batch) <= 5_000 + 500 for batch in history.batches)


def test_nothing_of_the_history_is_left_running(history: History) -> None:
    state = _state_of(history.events)
    assert not state.live and not state.tasks and not state.runs
    assert state.families.tasks.values and state.families.cost.values


def test_the_past_fleet_sends_no_snapshots_and_no_foreign_shapes(history: History) -> None:
    raws = [event for batch in history.batches for event in batch]
    assert not [event for event in raws if "metrics" in str(event["type"])]
    assert not [event for event in raws if "-r" in str(event["id"])]  # the real sources' ids


def test_the_same_seed_and_end_give_the_same_history() -> None:
    runs: list[list[DemoEvent]] = [[], []]
    for run in runs:
        backfill_history(run.extend, days=1, seed=3, end=END)
    assert runs[0] == runs[1]


def test_the_history_is_busier_in_working_hours_on_weekdays(history: History) -> None:
    busy: collections.Counter[bool] = collections.Counter()
    for event in history.events:
        if event.type == "task.submitted" and event.fields["task_type"] != "research":
            moment = datetime.fromtimestamp(event.timestamp, UTC)
            busy[moment.weekday() < 5 and 8 <= moment.hour < 18] += 1
    hours_busy = 10 * 10  # two working weeks of ten working hours
    per_hour_busy, per_hour_quiet = busy[True] / hours_busy, busy[False] / (DAYS * 24 - hours_busy)
    assert per_hour_busy > 2.5 * per_hour_quiet


def test_the_load_follows_hours_weekdays_and_growth() -> None:
    load = HistoryLoad(END)
    friday_noon = END - 2 * DAY - 12 * 3600
    sunday_night = END - 2 * 3600
    assert load(friday_noon) == pytest.approx(2 ** (-2.5 / 60))
    assert load(sunday_night) == pytest.approx(0.3 * 0.35 * 2 ** (-(2 / 24) / 60))
    assert load(friday_noon - 56 * DAY) == pytest.approx(load(friday_noon) / 2 ** (56 / 60))


def test_load_scales_the_arrivals_of_a_fleet() -> None:
    def submitted(load: float | None) -> int:
        fleet = DemoFleet(seed=11, rate=0.5, start_time=END, live=False,
                          load=None if load is None else (lambda _: load))
        raws = fleet.step(END + 2 * DAY)
        return sum(event.type == "task.submitted" for event in _validated(raws, END + 2 * DAY))

    assert 0.15 < submitted(0.25) / submitted(None) < 0.4


# --- the OpenMetrics file ------------------------------------------------------------------


def test_the_file_holds_each_family_whole_sampled_every_15_minutes(history: History) -> None:
    types, series = _series(history.openmetrics)
    assert types == [
        "# TYPE orchestrator_cost_usd counter",
        "# TYPE orchestrator_agents_created counter",
        "# TYPE orchestrator_tasks counter",
        "# TYPE orchestrator_task_cost_usd summary",
    ]
    assert series
    for (name, labels), samples in series.items():
        times = [timestamp for timestamp, _ in samples]
        assert times[-1] == pytest.approx(END), (name, labels)
        assert all(later - earlier == pytest.approx(HISTORY_SCRAPE_SECONDS)
                   for earlier, later in itertools.pairwise(times)), (name, labels)
        values = [value for _, value in samples]
        assert values == sorted(values), f"{name}{labels} decreases"
    first = min(samples[0][0] for samples in series.values())
    assert first == pytest.approx(history.start + HISTORY_SCRAPE_SECONDS)


def test_the_last_samples_are_what_an_exporter_of_these_events_shows(history: History) -> None:
    renderer = MetricsRenderer(state=_state_of(history.events), lock=threading.Lock(),
                               registry=CollectorRegistry(), live_agent_limit=5000)
    exposed = parse_metrics(renderer.render().decode())
    _, series = _series(history.openmetrics)
    names = {name for name, _ in series}
    assert names == {"orchestrator_cost_usd_total", "orchestrator_agents_created_total",
                     "orchestrator_tasks_total", "orchestrator_task_cost_usd_sum",
                     "orchestrator_task_cost_usd_count"}
    shown = {key: value for key, value in exposed.items() if key[0] in names}
    written = {
        (name, frozenset(re.findall(r'(\w+)="([^"]*)"', labels))): samples[-1][1]
        for (name, labels), samples in series.items()
    }
    assert written == pytest.approx(shown)


# --- serve --demo-history ------------------------------------------------------------------


@pytest.mark.integration
def test_serve_takes_the_history_in_before_it_serves(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    path = tmp_path / "history.om"
    exporter = exporter_factory(
        extra_args=["--demo", "--demo-history", "3", "--demo-history-openmetrics", str(path)],
        timeout=120,
    )
    # the ledger has the past days: the read API's costs by day show them
    with httpx.Client(base_url=exporter.url, timeout=30, trust_env=False,
                      headers={"Authorization": f"Bearer {exporter.token}"}) as client:
        days = client.get("/api/v1/costs", params={"group_by": "day"}).json()["items"]
    assert len([day for day in days if day["cost_usd"] > 0]) >= 3
    # the live fleet goes on from the history: no counter is below where the file ends
    metrics = exporter.metrics()
    _, series = _series(path)
    for (name, labels), samples in series.items():
        key = (name, frozenset(re.findall(r'(\w+)="([^"]*)"', labels)))
        assert metrics[key] >= samples[-1][1] - 1e-9, f"{name}{labels}"
