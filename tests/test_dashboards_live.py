"""Every dashboard query, run by a real Prometheus that scraped a real exporter fed by the demo.

The exporter runs with the demo's budgets; Prometheus runs the project's prometheus.yml (only
the addresses and intervals rewritten) with the recording and alert rules, scraping every
second. The demo fleet replays ten minutes of history at twenty times real speed and then keeps
going in real time. Every query of every panel, with the variables on "All", must then run
without error, and return data unless its panel is tagged conditional; every template variable
must offer values.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import (
    ExporterFactory,
    ExporterProcess,
    PrometheusFactory,
    PrometheusQueryError,
    PrometheusServer,
    http_client,
)
from test_dashboards import (
    Query,
    dashboards,
    queries,
    query_variables,
    substitute_all,
)

from exporter.demo import DEMO_CONFIG_YAML, DemoFleet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
# Simulated history replayed before real time. The demo's opening shows every outcome within two
# minutes, but a counter series is invisible to rate() until it increases a second time after
# its first scrape, and tasks take minutes: ten minutes give every kind of task time to end more
# than once.
HISTORY_SECONDS = 600.0
# Replayed this many times faster than real time, so its increases fall between scrapes (a
# backlog posted at once would land in one scrape and rate to zero). Catches up in ~32 s.
REPLAY_SPEED = 20.0
DEMO_RATE = 20.0
# From the first event until every query must have data: the replay plus a few evaluations of
# the rules built on other rules.
DEADLINE_SECONDS = 75.0
RANGE_SECONDS = 300.0
MAX_BATCH = 5000
LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?(\w+)\)")


@dataclass
class Outcome:
    error: str | None = None
    has_data: bool = False


def _prometheus_config(exporter: ExporterProcess) -> str:
    """prometheus/prometheus.yml scraping the test's exporter every second, without Alertmanager."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config.pop("alerting", None)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [exporter.address]}]
    return yaml.safe_dump(config)


def _rule_files() -> dict[str, str | Path]:
    rules = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    return {f"rules/{path.name}": path for path in rules}


class _Feeder:
    """Drives the demo fleet: its history replayed fast, then real time."""

    def __init__(self, exporter: ExporterProcess) -> None:
        self.exporter = exporter
        self.started = time.time()
        self.fleet = DemoFleet(seed=7, rate=DEMO_RATE, start_time=self.started - HISTORY_SECONDS)
        self.events = 0

    def simulated_now(self) -> float:
        elapsed = time.time() - self.started
        return min(self.started - HISTORY_SECONDS + REPLAY_SPEED * elapsed, time.time())

    def feed(self) -> None:
        events = self.fleet.step(self.simulated_now())
        for start in range(0, len(events), MAX_BATCH):
            response = self.exporter.post_events(events[start : start + MAX_BATCH])
            assert response.status_code == 200, response.text
        self.events += len(events)

    def caught_up(self) -> bool:
        elapsed = time.time() - self.started
        return (REPLAY_SPEED - 1) * elapsed >= HISTORY_SECONDS


def _evaluate(prometheus: PrometheusServer, query: Query, expr: str, now: float) -> Outcome:
    try:
        if query.instant:
            result = prometheus.query(expr, at=now)
            values = [sample["value"][1] for sample in result]
        else:
            result = prometheus.query_range(expr, now - RANGE_SECONDS, now, step=5.0)
            values = [value for series in result for _, value in series["values"]]
    except PrometheusQueryError as error:
        return Outcome(error=str(error))
    # NaN (0/0, a quantile of nothing) is drawn as no value: it is not data.
    return Outcome(has_data=any(not math.isnan(float(value)) for value in values))


def _evaluate_all(
    prometheus: PrometheusServer, expressions: dict[Query, str]
) -> dict[Query, Outcome]:
    now = time.time()
    return {query: _evaluate(prometheus, query, expr, now) for query, expr in expressions.items()}


def _missing(outcomes: dict[Query, Outcome]) -> list[Query]:
    return [q for q, outcome in outcomes.items() if not outcome.has_data and not q.conditional]


def _run_until(condition: Callable[[], bool], feeder: _Feeder, deadline: float) -> bool:
    """Feed the demo until its history is replayed and `condition` holds, or the deadline."""
    while time.time() < deadline:
        feeder.feed()
        if feeder.caught_up() and condition():
            return True
        time.sleep(1.0)
    return False


def _variable_values(
    prometheus: PrometheusServer, definition: str, board: dict[str, Any]
) -> list[str]:
    """What Grafana offers for a `label_values(selector, label)` variable with "All" above it."""
    match = LABEL_VALUES.fullmatch(definition)
    assert match, definition
    selector, label = match.groups()
    params = {"match[]": substitute_all(selector, board)} if selector else {}
    with http_client() as client:
        response = client.get(f"{prometheus.url}/api/v1/label/{label}/values", params=params)
    response.raise_for_status()
    values: list[str] = response.json()["data"]
    return values


def test_every_dashboard_query_runs_and_returns_data(
    exporter_factory: ExporterFactory,
    prometheus_factory: PrometheusFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exporter = exporter_factory(config=DEMO_CONFIG_YAML)
    prometheus = prometheus_factory(_prometheus_config(exporter), files=_rule_files())
    all_queries = queries()
    boards = {board["title"]: board for board in dashboards().values()}
    # As Grafana sends them with every variable on "All".
    expressions = {q: substitute_all(q.expr, boards[q.dashboard]) for q in all_queries}
    feeder = _Feeder(exporter)
    outcomes: dict[Query, Outcome] = {}

    def every_query_has_data() -> bool:
        outcomes.update(_evaluate_all(prometheus, expressions))
        return not _missing(outcomes)

    if not _run_until(every_query_has_data, feeder, feeder.started + DEADLINE_SECONDS):
        outcomes.update(_evaluate_all(prometheus, expressions))

    errors = {str(q): outcome.error for q, outcome in outcomes.items() if outcome.error}
    with_data = sum(outcome.has_data for outcome in outcomes.values())
    conditional = [q for q in all_queries if q.conditional]
    with capsys.disabled():
        print(
            f"\n{len(all_queries)} dashboard queries ran, {with_data} returned data "
            f"({len(conditional)} conditional, {sum(outcomes[q].has_data for q in conditional)} "
            f"of them with data); {feeder.events} demo events in "
            f"{time.time() - feeder.started:.0f} s"
        )
    assert not errors, "\n".join(f"{q}: {error}" for q, error in errors.items())
    missing = _missing(outcomes)
    assert not missing, "no data:\n" + "\n".join(f"{q}: {q.expr}" for q in missing)

    for board in boards.values():
        for variable in query_variables(board):
            values = _variable_values(prometheus, variable["query"], board)
            assert values, f"{board['title']} ${variable['name']} offers nothing"
