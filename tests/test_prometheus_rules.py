"""The Prometheus config, recording and alert rules: valid for promtool, tested, documented.

The helpers above the tests (`alert_rules`, `run_tool`, ...) serve the other alerting tests too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import require_binary

ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))

# The two bases of every alert link (see the header of prometheus/rules/alerts.yml).
RUNBOOK_BASE = (
    "https://github.com/orchestrator-exporter/orchestrator-exporter/blob/main/docs/runbooks.md"
)
GRAFANA_BASE = "http://localhost:3000"
DASHBOARD_UIDS = {
    "orchestrator-fleet",
    "orchestrator-agents",
    "orchestrator-workflows",
    "orchestrator-costs",
    "orchestrator-exporter",
}
SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}


def _rules(kind: str) -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of prometheus/rules/*.yml, as loaded from YAML."""
    return _rules("alert")


def recording_rules() -> list[dict[str, Any]]:
    return _rules("record")


def metrics_read(text: str) -> set[str]:
    """The exporter metrics that `text` (PromQL) reads, as written (`_bucket` etc. kept).

    Recorded series (names with colons) are left out.
    """
    without_recorded = re.sub(r"[a-z_]*:[a-z0-9_:]+", " ", text)
    return set(re.findall(r"\borchestrator_[a-z_]+\b", without_recorded))


def undocumented_metrics(text: str) -> set[str]:
    """The exporter metrics that `text` (PromQL) reads and docs/metrics.md does not list.

    docs/metrics.md is the contract: a rule on a metric the exporter lacks would never fire.
    Histogram series count as their family.
    """
    table_row = re.compile(r"^\| `(orchestrator_[a-z_]+)` \|", re.MULTILINE)
    documented = set(table_row.findall((ROOT / "docs" / "metrics.md").read_text()))
    return {
        name
        for name in metrics_read(text)
        if name not in documented and re.sub(r"_(bucket|sum|count)$", "", name) not in documented
    }


def _rule_name(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule["record"])


def run_tool(*argv: str, package: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Prometheus or Alertmanager tool (skipped if missing, failed under CI=true)."""
    binary = require_binary(argv[0], package)
    return subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=300, cwd=cwd)


def _promtool(*arguments: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_tool("promtool", *map(str, arguments), package="prometheus", cwd=cwd)


def _assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


# --- promtool ----------------------------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    result = _promtool("check", "config", PROMETHEUS / "prometheus.yml")
    _assert_succeeded(result)
    assert "WARNING" not in result.stdout + result.stderr


def test_rule_files_are_valid() -> None:
    result = _promtool("check", "rules", *RULE_FILES)
    _assert_succeeded(result)
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", *TEST_FILES)
    _assert_succeeded(result)
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


# --- what the unit tests cover -----------------------------------------------------------------


def _unit_tests() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in TEST_FILES]


def _alert_cases() -> list[dict[str, Any]]:
    return [
        case
        for document in _unit_tests()
        for group in document["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def test_every_test_group_sets_its_interval() -> None:
    # Without it promtool 2.42 lays every sample at time 0 and the test checks the wrong thing.
    for path, document in zip(TEST_FILES, _unit_tests(), strict=True):
        for index, group in enumerate(document["tests"]):
            assert "interval" in group, f"{path.name}: tests[{index}] has no interval"


def test_unit_tests_load_every_rule_file() -> None:
    for path, document in zip(TEST_FILES, _unit_tests(), strict=True):
        loaded = {(path.parent / name).resolve() for name in document["rule_files"]}
        assert loaded == {rule_file.resolve() for rule_file in RULE_FILES}, path.name


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alert_rules()])
def test_every_alert_has_a_firing_and_a_silent_case(alert: str) -> None:
    cases = [case for case in _alert_cases() if case["alertname"] == alert]
    firing = [case for case in cases if case["exp_alerts"]]
    assert firing, f"no promtool case where {alert} fires"
    assert any(not case["exp_alerts"] for case in cases), f"no case where {alert} is silent"
    for case in firing:
        for expected in case["exp_alerts"]:
            assert set(expected.get("exp_annotations", {})) == ANNOTATIONS, (alert, expected)
            assert "severity" in expected["exp_labels"], (alert, expected)


def test_every_group_of_the_rule_files_is_in_the_evaluation_order() -> None:
    # promtool orders unlisted groups at random; a recording group evaluated after the alert
    # that reads it makes the test flaky.
    groups = [
        group["name"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
    ]
    for path, document in zip(TEST_FILES, _unit_tests(), strict=True):
        assert sorted(document["group_eval_order"]) == sorted(groups), path.name


# --- the rules themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_follows_the_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Orchestrator(?:[A-Z][a-z0-9]+)+", name), name
    assert set(rule["labels"]) == {"severity"} and rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == ANNOTATIONS
    assert "{{" not in annotations["summary"], "the summary is static; numbers go in description"
    assert "{{" in annotations["description"], "the description carries the numbers"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_links_to_its_runbook_section_and_a_dashboard(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"
    base, _, uid = annotations["dashboard_url"].rpartition("/d/")
    assert base == GRAFANA_BASE and uid in DASHBOARD_UIDS, annotations["dashboard_url"]


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = [rule["record"] for rule in recording_rules()]
    assert len(names) == len(set(names))
    for name in names:
        assert re.fullmatch(r"[a-z_]+:orchestrator_[a-z_]+:[a-z0-9_]+", name), name


@pytest.mark.parametrize("rule", recording_rules() + alert_rules(), ids=_rule_name)
def test_rule_reads_only_documented_metrics(rule: dict[str, Any]) -> None:
    # Descriptions query series too.
    text = " ".join([rule["expr"], *rule.get("annotations", {}).values()])
    assert not undocumented_metrics(text)


# --- docs/alerts.md ----------------------------------------------------------------------------


def _catalogue() -> dict[str, dict[str, str]]:
    """The rows of the table in docs/alerts.md: alert, severity, for, expression summary."""
    rows: dict[str, dict[str, str]] = {}
    for line in (ROOT / "docs" / "alerts.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"`Orchestrator\w+`", cells[0]):
            rows[cells[0].strip("`")] = {"severity": cells[1], "for": cells[2].strip("`")}
    return rows


def test_alert_catalogue_lists_every_alert_as_defined() -> None:
    catalogue = _catalogue()
    assert set(catalogue) == {rule["alert"] for rule in alert_rules()}
    for rule in alert_rules():
        row = catalogue[rule["alert"]]
        assert row["severity"] == rule["labels"]["severity"], rule["alert"]
        assert row["for"] == rule.get("for", "0s"), rule["alert"]
