"""Each demo scenario makes its alert fire under the shipped rules; the normal fleet fires none.

In real time cost-spike alone takes 37 minutes, so the demo fleet runs on a virtual clock
through the exporter core as `serve --demo` builds it (build_exporter with the demo's budgets):
its events validated, applied to the fleet state, and /metrics rendered with the virtual clock
every 15 virtual seconds, as Prometheus scrapes it. The ledger is left out: it makes events
durable and drops duplicates (the demo sends none), and what /metrics shows comes from the
state. The scrapes become the input series of a promtool unit test that evaluates
prometheus/rules/*.yml, unchanged, every 15 seconds.

Time. promtool's clock starts at 0 (1970), which the exporter refuses as an event time, so the
demo starts at ORIGIN and every `*_timestamp_seconds` value is shifted back by it: `time()`
minus an agent's last activity, or a period's end minus `time()`, reads as it would in
production. ORIGIN is the first of a month and a Monday, so every budget period (day, week,
month) starts at promtool's 0 too, and the runs (under an hour) stay within one day.

Input. Only the metrics the rule expressions name, without the `job` and `instance` labels a
scrape adds (every rule aggregates them away): promtool 2.42 builds its input by repeated string
concatenation, so its load time grows with the square of the text. The exporter's own alerts on
`up` and scrape durations have no input here.

Verdict. promtool shows a query's result only when it differs from the expected one. Each test
file asks which alerts were firing, and first when, and expects the normal fleet's answer:
nothing. For a scenario promtool fails, and what it got instead is the answer (`_fired`).
"""

from __future__ import annotations

import calendar
import itertools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_prometheus_rules import RULE_FILES, alert_rules, metrics_read, recording_rules, run_tool

from exporter.config import parse_config
from exporter.demo import DEMO_CONFIG_YAML, SCENARIOS, DemoFleet
from exporter.events import validate_batch
from exporter.service import Exporter, build_exporter
from exporter.settings import Settings

ORIGIN = float(calendar.timegm((2026, 6, 1, 0, 0, 0)))  # Monday 1 June 2026, 00:00 UTC
SCRAPE_SECONDS = 15  # Prometheus' default scrape and evaluation interval
# Each scenario's alert, and the virtual minutes after the demo's start by which it must fire
# (its own start is SCENARIO_START_SECONDS in exporter/demo.py). docs/client.md has the table.
EXPECTED = {
    "budget-overrun": ("OrchestratorBudgetExceeded", 6),
    "cost-spike": ("OrchestratorCostAnomaly", 40),
    "stuck-agent": ("OrchestratorAgentStuck", 12),
    "context-pressure": ("OrchestratorAgentContextWindowCritical", 3),
    "failure-burst": ("OrchestratorWorkflowRunsFailing", 5),
}
NORMAL_MINUTES = max(minutes for _, minutes in EXPECTED.values())
FIRED = re.compile(r'\{alertname="(\w+)"\} ([-+.\dE]+)')

Scrape = dict[str, float]  # series (name and labels, as promtool wants them) -> value


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _demo_exporter(clock: _Clock) -> Exporter:
    """Built, not started: nothing is written to the ledger or read from it."""
    settings = Settings(database_url="sqlite://")
    exporter = build_exporter(settings, config=parse_config(yaml.safe_load(DEMO_CONFIG_YAML)))
    exporter.renderer.clock = clock  # budget periods and spend at the virtual time
    return exporter


def _apply(exporter: Exporter, raw: list[dict[str, object]], now: float) -> None:
    """A tick's events, validated as `serve --demo` does and applied as the pipeline does."""
    events, problems = validate_batch(list(raw), now)
    assert problems == []
    with exporter.renderer.lock:
        for event in events:
            exporter.state.apply(event)


def _scrapes(scenario: str | None, minutes: float) -> list[Scrape]:
    """The demo's first `minutes`, read every SCRAPE_SECONDS of virtual time from its start."""
    clock = _Clock(ORIGIN)
    exporter = _demo_exporter(clock)
    fleet = DemoFleet(scenario=scenario, start_time=ORIGIN)  # the CLI's default seed and rate
    names = _metrics_the_rules_read()
    scrapes = []
    for index in range(round(minutes * 60 / SCRAPE_SECONDS) + 1):
        clock.now = ORIGIN + index * SCRAPE_SECONDS
        _apply(exporter, fleet.step(clock.now), clock.now)
        scrapes.append(_samples(exporter.renderer.render().decode(), names))
    return scrapes


def _metrics_the_rules_read() -> set[str]:
    return set().union(*(metrics_read(rule["expr"]) for rule in recording_rules() + alert_rules()))


def _samples(exposition: str, names: set[str]) -> Scrape:
    # Split at the last space rather than parsed: the renderer writes no timestamps, and the
    # series text before the value is already in promtool's notation.
    samples = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name = series.partition("{")[0]
            if name in names:
                shift = ORIGIN if name.endswith("_timestamp_seconds") else 0.0
                samples[series] = float(value) - shift
    return samples


def _values(points: list[float | None]) -> str:
    """One series in promtool's notation: `_` not exposed, `stale` the first scrape without it
    (the marker Prometheus writes), `VxN` a value followed by N repeats."""
    tokens = []
    exposed = False
    for point in points:
        if point is None:
            tokens.append("stale" if exposed else "_")
        else:
            tokens.append(str(int(point)) if point.is_integer() else repr(point))
        exposed = point is not None
    while tokens and tokens[-1] == "_":
        tokens.pop()
    return " ".join(_runs(tokens))


def _runs(tokens: list[str]) -> Iterator[str]:
    for token, group in itertools.groupby(tokens):
        count = len(list(group))
        if count == 1:
            yield token
        elif token == "_":
            yield f"_x{count}"
        else:
            yield f"{token}x{count - 1}"


def _evaluation_order() -> list[str]:
    # Recording groups first, so an alert sees the recorded series of the same evaluation (as
    # in prometheus/tests/; promtool orders the groups at random otherwise).
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [group["name"] for group in groups if "record" in group["rules"][0]] + [
        group["name"] for group in groups if "alert" in group["rules"][0]
    ]


def _unit_test(scrapes: list[Scrape], minutes: float) -> dict[str, Any]:
    span = round(minutes * 60)
    series = dict.fromkeys(key for scrape in scrapes for key in scrape)
    # The first evaluation at which each alert was firing, in seconds from the demo's start.
    first_firing = (
        'min by (alertname) (min_over_time(timestamp(ALERTS{alertstate="firing"})'
        f"[{span}s:{SCRAPE_SECONDS}s]))"
    )
    return {
        "rule_files": [str(path) for path in RULE_FILES],
        "evaluation_interval": f"{SCRAPE_SECONDS}s",
        "group_eval_order": _evaluation_order(),
        "tests": [{
            "interval": f"{SCRAPE_SECONDS}s",
            "input_series": [
                {"series": key, "values": _values([scrape.get(key) for scrape in scrapes])}
                for key in series
            ],
            "promql_expr_test": [
                {"expr": first_firing, "eval_time": f"{span}s", "exp_samples": []},
            ],
        }],
    }  # fmt: skip


def _write_unit_test(workdir: Path, scenario: str | None, minutes: float) -> Path:
    scrapes = _scrapes(scenario, minutes)
    path = workdir / f"{scenario or 'normal'}.yml"
    path.write_text(json.dumps(_unit_test(scrapes, minutes)))  # JSON is YAML, and fast to write
    return path


def _fired(result: subprocess.CompletedProcess[str]) -> dict[str, float]:
    """Alert name -> virtual minute it first fired, from promtool's verdict on the test file."""
    output = result.stdout + result.stderr
    if result.returncode == 0 and "SUCCESS" in output:
        return {}
    got = re.findall(r"^\s*got: (.*)$", output, re.MULTILINE)
    fired = {name: float(seconds) / 60 for name, seconds in FIRED.findall(got[0])} if got else {}
    assert result.returncode == 1 and len(got) == 1 and fired, f"promtool failed:\n{output}"
    return fired


def _report(fired: dict[str, float]) -> str:
    alerts = sorted(fired.items(), key=lambda item: item[1])
    return ", ".join(f"{name} at {minute:.2f} min" for name, minute in alerts) or "no alert"


@dataclass(frozen=True)
class Runs:
    fired: dict[str | None, dict[str, float]]  # per scenario (None: the normal fleet)
    seconds: float  # wall time of all the runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Each scenario's run, and a normal run as long as the longest.

    The runs are simulated one after the other, the longest first, while promtool evaluates
    the ones already written.
    """
    workdir = tmp_path_factory.mktemp("scenario-alerts")
    spans: dict[str | None, float] = {scenario: minutes for scenario, (_, minutes) in
                                      EXPECTED.items()}  # fmt: skip
    spans[None] = NORMAL_MINUTES
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts: dict[str | None, Future[subprocess.CompletedProcess[str]]] = {}
        for scenario, minutes in sorted(spans.items(), key=lambda item: -item[1]):
            test_file = _write_unit_test(workdir, scenario, minutes)
            verdicts[scenario] = pool.submit(
                run_tool, "promtool", "test", "rules", str(test_file), package="prometheus"
            )
        fired = {scenario: _fired(verdict.result()) for scenario, verdict in verdicts.items()}
    return Runs(fired, time.monotonic() - began)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_fires_its_alert_under_the_shipped_rules(
    scenario: str, runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    alert, minutes = EXPECTED[scenario]
    fired = runs.fired[scenario]
    report = f"{scenario}: {_report(fired)} (virtual time)"
    with capsys.disabled():
        print(f"\n{report}")
    assert alert in fired, f"{alert} did not fire within {minutes} minutes; {report}"
    assert fired[alert] <= minutes, report


def test_the_normal_fleet_fires_no_alert(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    normal = runs.fired[None]
    with capsys.disabled():
        print(f"\nnormal fleet, {NORMAL_MINUTES} min: {_report(normal)}; the {len(runs.fired)} "
              f"runs took {runs.seconds:.0f} s")
    assert normal == {}, f"in {NORMAL_MINUTES} minutes of the normal demo: {_report(normal)}"
