"""Every dashboard query, run by a real Prometheus scraping `serve --demo` from its start.

The exporter runs as `orchestrator-exporter serve --demo` (its in-process demo fleet, the demo's
budgets, a fresh SQLite ledger); Prometheus runs the project's prometheus.yml (only the addresses
and intervals rewritten) with the recording and alert rules, scraping every second. Every query
of every panel, with the variables on "All", must run without error, and return data unless its
panel is tagged conditional, within two minutes of the exporter's start: the README's main
command lights up every dashboard. Every template variable must offer values.

The History dashboard reads rules recorded once an hour over weeks: its queries run against the
demo's history instead (`serve --demo-history`), imported into Prometheus with promtool the way
docs/dashboards.md tells a user to, and must each return data over the dashboard's time range.
"""

from __future__ import annotations

import math
import re
import time
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
    HISTORY_GROUP,
    HISTORY_UID,
    RECORDING_RULES,
    Query,
    dashboards,
    queries,
    query_variables,
    substitute_all,
)
from test_prometheus_rules import run_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
# From the start of `serve --demo` until every query must have data.
DEADLINE_SECONDS = 120.0
POLL_SECONDS = 2.0
RANGE_SECONDS = 300.0
LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?(\w+)\)")
# Month over month compares the last 30 days with the 30 before: a little more than 30 days.
HISTORY_DAYS = 32
# Prometheus deletes blocks older than its retention (15 days by default) when it loads them.
HISTORY_RETENTION = "--storage.tsdb.retention.time=100d"
# promtool writes blocks of 2 hours by default and reads the whole input once per block.
BLOCK_DURATION = f"--max-block-duration={24 * HISTORY_DAYS}h"
STEPS = {"1h": 3600.0, "1d": 86_400.0}


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


class _Watch:
    """Evaluates every query each round; remembers errors and when each query first had data."""

    def __init__(self, prometheus: PrometheusServer, started: float) -> None:
        self.prometheus = prometheus
        self.started = started
        boards = {board["title"]: board for board in dashboards().values()
                  if board["uid"] != HISTORY_UID}
        # As Grafana sends them with every variable on "All".
        self.expressions = {q: substitute_all(q.expr, boards[q.dashboard]) for q in queries()
                            if q.dashboard in boards}
        self.errors: dict[Query, str] = {}
        self.lit: dict[Query, float] = {}  # seconds after the start when it first had data
        self.missing: list[Query] = []  # unconditional queries without data in the last round

    def round(self) -> None:
        now = time.time()
        self.missing = []
        for query, expr in self.expressions.items():
            outcome = _evaluate(self.prometheus, query, expr, now)
            if outcome.error:
                self.errors.setdefault(query, outcome.error)
            if outcome.has_data:
                self.lit.setdefault(query, now - self.started)
            elif not query.conditional:
                self.missing.append(query)

    def run_until_lit(self, deadline: float) -> float | None:
        """Rounds until every unconditional query has data in the same round: the seconds from
        the start to that round, or None at the deadline."""
        while True:
            began = time.time()
            self.round()
            if not self.missing:
                return began - self.started
            if time.time() >= deadline:
                return None
            time.sleep(POLL_SECONDS)


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


def _report(watch: _Watch, lit_after: float | None) -> str:
    conditional = [q for q in watch.expressions if q.conditional]
    when = (f"{lit_after:.0f} s after `serve --demo` started" if lit_after is not None
            else f"NOT within {DEADLINE_SECONDS:.0f} s")
    last = sorted(watch.lit.items(), key=lambda item: item[1])[-3:]
    return (
        f"{len(watch.expressions)} dashboard queries ran, {len(watch.lit)} returned data "
        f"({len(conditional)} conditional, {sum(q in watch.lit for q in conditional)} of them "
        f"with data); every unconditional query had data {when}; the last: "
        + ", ".join(f"{q} ({seconds:.0f} s)" for q, seconds in last)
    )


def test_serve_demo_lights_up_every_dashboard_query_within_two_minutes(
    exporter_factory: ExporterFactory,
    prometheus_factory: PrometheusFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.time()
    exporter = exporter_factory(extra_args=["--demo"])
    prometheus = prometheus_factory(_prometheus_config(exporter), files=_rule_files())
    watch = _Watch(prometheus, started)

    report = _report(watch, watch.run_until_lit(started + DEADLINE_SECONDS))
    with capsys.disabled():
        print(f"\n{report}")
    errors = [f"{q}: {error}" for q, error in watch.errors.items()]
    assert not errors, f"{report}\nerrors:\n" + "\n".join(errors)
    missing = "\n".join(f"{q}: {q.expr}" for q in watch.missing)
    assert not missing, f"{report}\nno data:\n{missing}"

    for board in dashboards().values():
        for variable in query_variables(board):
            values = _variable_values(prometheus, variable["query"], board)
            assert values, f"{board['title']} ${variable['name']} offers nothing"
    _wait_for_the_real_orchestrators(prometheus, started + DEADLINE_SECONDS)


# The demo's @orchestr8 bus events and Python orchestrator frames (exporter/demo_sources.py), in
# the series the dashboards query: bus runs end without a run id; the dashboard's agents carry no
# model, and their cost arrives with their task's end (about a minute and a half in).
REAL_ORCHESTRATORS = (
    'sum(orchestrator_workflow_runs_total{workflow="nightly-digest",status="completed"}) >= 1',
    'sum(orchestrator_steps_total{workflow="nightly-digest",status="completed"}) >= 3',
    'sum(orchestrator_agents_created_total{model="unknown"}) >= 2',
    'sum(orchestrator_cost_usd_total{model="unknown"}) > 0',
)


def _wait_for_the_real_orchestrators(prometheus: PrometheusServer, deadline: float) -> None:
    waiting = list(REAL_ORCHESTRATORS)
    while waiting:
        waiting = [promql for promql in waiting if not prometheus.query(promql)]
        assert not waiting or time.time() < deadline, f"no data: {waiting}"
        time.sleep(POLL_SECONDS if waiting else 0)
    # nothing the real shapes sent was left without its run
    assert not prometheus.query("sum(orchestrator_exporter_events_uncorrelated_total) > 0")


def _promtool(*arguments: str | Path) -> None:
    result = run_tool("promtool", *map(str, arguments), package="prometheus")
    assert result.returncode == 0, result.stdout + result.stderr


def _history_rules(directory: Path) -> Path:
    """A rule file with the history group alone: promtool backfills every rule it is given."""
    groups = yaml.safe_load(RECORDING_RULES.read_text())["groups"]
    path = directory / "history-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [g for g in groups if g["name"] == HISTORY_GROUP]}))
    return path


def _backfill(history: Path, start: float, end: float, workdir: Path,
              prometheus_factory: PrometheusFactory) -> Path:
    """A TSDB with the demo's counters and the history rules over them, as docs/dashboards.md
    has a user make it: the counters imported, then the rules evaluated by a Prometheus that
    holds them."""
    tsdb = workdir / "tsdb"
    _promtool("tsdb", "create-blocks-from", "openmetrics", BLOCK_DURATION, "--quiet", history,
              tsdb)
    raw = prometheus_factory("global: {}\n", tsdb=tsdb, extra_args=[HISTORY_RETENTION])
    _promtool("tsdb", "create-blocks-from", "rules", BLOCK_DURATION, "--quiet",
              f"--url={raw.url}", f"--start={start:.0f}", f"--end={end:.0f}",
              f"--output-dir={tsdb}", _history_rules(workdir))
    raw.stop()
    return tsdb


def test_every_history_panel_has_data_on_the_demo_history(
    exporter_factory: ExporterFactory,
    prometheus_factory: PrometheusFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    history = tmp_path / "history.om"
    started = time.time()
    exporter = exporter_factory(
        extra_args=["--demo", "--demo-history", str(HISTORY_DAYS),
                    "--demo-history-openmetrics", str(history)],
        timeout=180,
    )
    ready = time.time()  # the history ended in between: the exporter serves once it is in
    tsdb = _backfill(history, started - HISTORY_DAYS * 86_400, ready, tmp_path,
                     prometheus_factory)
    prometheus = prometheus_factory(_prometheus_config(exporter), files=_rule_files(),
                                    tsdb=tsdb, extra_args=[HISTORY_RETENTION])

    [board] = [board for board in dashboards().values() if board["uid"] == HISTORY_UID]
    span = board["time"]["from"].removeprefix("now-")  # Grafana's $__range at the default
    found = [query for query in queries() if query.dashboard == board["title"]]
    now, results = time.time(), {}
    for query in found:
        expr = substitute_all(query.expr, board, {"__range": span})
        if query.instant:
            values = [sample["value"][1] for sample in prometheus.query(expr, at=now)]
        else:
            step = STEPS[query.interval]
            start = now - int(span.removesuffix("d")) * 86_400
            result = prometheus.query_range(expr, start, now, step=step)
            values = [value for series in result for _, value in series["values"]]
        results[query] = sum(not math.isnan(float(value)) for value in values)
    with capsys.disabled():
        print(f"\nHistory: {HISTORY_DAYS} days replayed and imported in {ready - started:.0f} s "
              f"+ {now - ready:.0f} s; values per query: "
              + ", ".join(f"{q.panel} / {q.ref_id} {n}" for q, n in results.items()))
    assert not [q for q, n in results.items() if not n], "no data: " + ", ".join(
        f"{q}: {q.expr}" for q, n in results.items() if not n)
