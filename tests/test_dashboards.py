"""The generated Grafana dashboards: reproducible, complete, consistent with the repository.

The helpers at the top (`dashboards`, `panels`, `queries`, `substitute_all`) are also used by
test_dashboards_live.py, which runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING = ROOT / "grafana" / "provisioning"

UIDS = {
    "fleet-overview.json": "orchestrator-fleet",
    "agents.json": "orchestrator-agents",
    "workflows.json": "orchestrator-workflows",
    "costs.json": "orchestrator-costs",
    "history.json": "orchestrator-history",
    "exporter-health.json": "orchestrator-exporter",
    "explore.json": "orchestrator-explore",
}
CONDITIONAL_TAG = "conditional"
HISTORY_UID = "orchestrator-history"
HISTORY_GROUP = "orchestrator-history.rules"
RECORDING_RULES = ROOT / "prometheus" / "rules" / "recording.yml"
# What Grafana puts in place of its built-in variables, for the queries a test evaluates.
BUILT_INS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")

Dashboard = dict[str, Any]
Panel = dict[str, Any]


@dataclass(frozen=True)
class Query:
    """One PromQL target of one panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool
    conditional: bool
    interval: str  # the panel's smallest step ("" for Grafana's own)

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


def dashboards() -> dict[str, Dashboard]:
    """The committed dashboards by file name."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS_DIR.glob("*.json"))
    }


def panels(dashboard: Dashboard) -> Iterator[Panel]:
    """Every panel but rows, including the panels of collapsed rows."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def queries() -> list[Query]:
    """Every PromQL target of every dashboard (the Explore dashboard's Infinity targets read
    the exporter's API instead: test_dashboard_explore.py runs them)."""
    return [
        Query(
            dashboard=dashboard["title"],
            panel=panel["title"],
            ref_id=target["refId"],
            expr=target["expr"],
            instant=bool(target.get("instant")) and not target.get("range"),
            conditional=CONDITIONAL_TAG in (panel.get("tags") or []),
            interval=panel.get("interval") or "",
        )
        for dashboard in dashboards().values()
        for panel in panels(dashboard)
        for target in panel.get("targets") or []
        if "expr" in target
    ]


def query_variables(dashboard: Dashboard) -> list[dict[str, Any]]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def substitute_all(
    expr: str, dashboard: Dashboard, built_ins: dict[str, str] | None = None
) -> str:
    """`expr` as Grafana sends it with every variable on "All" and the default datasource, and
    the built-in variables at `built_ins` (by default BUILT_INS)."""
    all_values = {v["name"]: v["allValue"] for v in query_variables(dashboard)}
    values: dict[str, str] = {**(built_ins or BUILT_INS), "datasource": "prometheus", **all_values}

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return values[name]

    return VARIABLE.sub(replace, expr)


def recorded_rules(group: str | None = None) -> set[str]:
    """The names the recording-rule file records (those of `group` only, if given)."""
    return {
        rule["record"]
        for found in yaml.safe_load(RECORDING_RULES.read_text())["groups"]
        if group is None or found["name"] == group
        for rule in found["rules"]
    }


def provisioned_datasources() -> list[dict[str, Any]]:
    found = []
    for path in sorted((PROVISIONING / "datasources").glob("*.yml")):
        found += yaml.safe_load(path.read_text())["datasources"]
    return found


def _used_variables(text: str) -> set[str]:
    return {next(group for group in match.groups() if group) for match in VARIABLE.finditer(text)}


# --- reproducible ---


def test_committed_dashboards_equal_the_generator_output(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grafana.generate", "--output", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    generated = sorted(path.name for path in tmp_path.glob("*.json"))
    assert generated == sorted(path.name for path in DASHBOARDS_DIR.glob("*.json")), (
        "run `make dashboards` and commit grafana/dashboards/"
    )
    for name in generated:
        assert (tmp_path / name).read_bytes() == (DASHBOARDS_DIR / name).read_bytes(), (
            f"grafana/dashboards/{name} differs from the generator's output: run `make dashboards`"
        )


def test_the_generator_output_does_not_depend_on_the_run(tmp_path: Path) -> None:
    for run in ("first", "second"):
        subprocess.run(
            [sys.executable, "-m", "grafana.generate", "--output", str(tmp_path / run)],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
    for path in (tmp_path / "first").glob("*.json"):
        assert path.read_bytes() == (tmp_path / "second" / path.name).read_bytes()


# --- identity and navigation ---


def test_every_dashboard_has_its_stable_uid_and_the_project_tag() -> None:
    found = dashboards()
    assert {name: board["uid"] for name, board in found.items()} == UIDS
    for board in found.values():
        assert "orchestrator" in board["tags"]
        assert board["title"] and board["description"]


def test_panel_ids_are_unique_within_each_dashboard() -> None:
    for board in dashboards().values():
        ids = [panel["id"] for panel in board["panels"]]
        ids += [nested["id"] for panel in board["panels"] for nested in panel.get("panels") or []]
        assert len(ids) == len(set(ids)), board["title"]
        assert 0 not in ids


def test_every_dashboard_links_to_the_others() -> None:
    for board in dashboards().values():
        links = [link for link in board["links"] if link["type"] == "dashboards"]
        assert links, f"{board['title']} has no link to the other dashboards"
        assert all("orchestrator" in link["tags"] for link in links)
        assert all(link["keepTime"] and link["includeVars"] for link in links)


def test_links_to_dashboards_point_at_existing_uids() -> None:
    uids = set(UIDS.values())
    urls = [
        link["url"]
        for board in dashboards().values()
        for panel in panels(board)
        for link in panel.get("links") or []
    ]
    assert urls, "the Fleet overview links its panels to the detailed dashboards"
    for url in urls:
        match = re.match(r"/d/([\w-]+)", url)
        assert match and match.group(1) in uids, url


def test_alert_dashboard_urls_point_at_existing_dashboards() -> None:
    uids = set(UIDS.values())
    rules_dir = ROOT / "prometheus" / "rules"
    if not rules_dir.is_dir():
        pytest.skip("prometheus/rules does not exist yet")
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                url = rule.get("annotations", {}).get("dashboard_url")
                if url:
                    assert url.rsplit("/d/", 1)[-1].split("?")[0] in uids, (rule["alert"], url)


# --- panels ---


def test_every_panel_has_a_unit_a_title_and_a_description() -> None:
    for board in dashboards().values():
        for panel in panels(board):
            where = f"{board['title']} / {panel.get('title')}"
            assert panel.get("title"), where
            assert panel.get("description"), where
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where} has no unit"


def test_panels_fit_the_grid_without_overlapping() -> None:
    for board in dashboards().values():
        taken: dict[tuple[int, int], str] = {}
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{board['title']} / {panel['title']}"
            for x in range(grid["x"], grid["x"] + grid["w"]):
                for y in range(grid["y"], grid["y"] + grid["h"]):
                    assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                    taken[(x, y)] = panel["title"]


def test_conditional_panels_say_when_they_are_empty() -> None:
    conditional = [
        panel
        for board in dashboards().values()
        for panel in panels(board)
        if CONDITIONAL_TAG in (panel.get("tags") or [])
    ]
    assert conditional, "the firing-alerts panels at least are conditional"
    for panel in conditional:
        assert "Empty" in panel["description"], panel["title"]


def test_the_fleet_overview_shows_firing_alerts_from_alertmanager() -> None:
    fleet = dashboards()["fleet-overview.json"]
    alert_panels = [panel for panel in panels(fleet) if panel["type"] == "alertGroups"]
    assert len(alert_panels) == 1
    assert alert_panels[0]["datasource"] == {"type": "alertmanager", "uid": "alertmanager"}


def test_the_agents_table_joins_live_agents_with_their_numbers() -> None:
    agents = dashboards()["agents.json"]
    table = next(panel for panel in panels(agents) if panel["title"] == "Every live agent")
    assert table["targets"][0]["expr"].startswith("orchestrator_agent_info{")
    assert all(target["instant"] and target["format"] == "table" for target in table["targets"])
    renamed = table["transformations"][1]["options"]["renameByName"]
    assert set(renamed.values()) >= {"Agent", "Cost", "Tokens", "Context", "Last activity"}


# --- datasources ---


def test_datasource_uids_resolve_to_provisioned_datasources() -> None:
    provisioned = {source["uid"]: source for source in provisioned_datasources()}
    names = {source["name"]: source for source in provisioned.values()}
    for board in dashboards().values():
        variable = next(
            (v for v in board["templating"]["list"] if v["type"] == "datasource"), None
        )
        if variable is not None:
            assert variable["name"] == "datasource" and variable["query"] == "prometheus"
            assert provisioned[variable["current"]["value"]]["type"] == "prometheus"
        for panel in panels(board):
            refs = [panel["datasource"]] + [t["datasource"] for t in panel.get("targets") or []]
            for ref in refs:
                assert variable is not None or ref["uid"] != "${datasource}", panel["title"]
                uid = "prometheus" if ref["uid"] == "${datasource}" else ref["uid"]
                assert uid in provisioned, f"{board['title']} / {panel['title']}: {uid}"
                assert provisioned[uid]["type"] == ref["type"], panel["title"]
            if panel["type"] == "alertGroups":
                assert names[panel["options"]["alertmanager"]]["type"] == "alertmanager"


def test_prometheus_is_the_default_datasource_and_alertmanager_the_prometheus_kind() -> None:
    by_uid = {source["uid"]: source for source in provisioned_datasources()}
    assert by_uid["prometheus"]["isDefault"] is True
    assert by_uid["alertmanager"]["jsonData"]["implementation"] == "prometheus"


def test_the_dashboard_provider_loads_the_orchestrator_folder() -> None:
    [provider] = yaml.safe_load(
        (PROVISIONING / "dashboards" / "orchestrator.yml").read_text()
    )["providers"]
    assert provider["folder"] == "Orchestrator"
    assert provider["type"] == "file"


# --- variables and queries ---


def test_variables_offer_all_and_several_values() -> None:
    for board in dashboards().values():
        for variable in query_variables(board):
            where = f"{board['title']} ${variable['name']}"
            assert variable["includeAll"] and variable["multi"], where
            assert variable["allValue"] == ".*", where
            assert variable["current"]["value"] == "$__all", where
            assert variable["datasource"]["uid"] == "${datasource}", where


def test_queries_use_only_variables_the_dashboard_defines() -> None:
    for board in dashboards().values():
        defined = {v["name"] for v in board["templating"]["list"]} | set(BUILT_INS)
        # PromQL, or the URL of an Infinity target
        texts = [t.get("expr") or t["url"] for p in panels(board) for t in p.get("targets") or []]
        texts += [v["query"] for v in query_variables(board)]
        for text in texts:
            assert _used_variables(text) <= defined, f"{board['title']}: {text}"
        for index, variable in enumerate(board["templating"]["list"]):
            earlier = {v["name"] for v in board["templating"]["list"][:index]}
            if variable["type"] == "query":
                assert _used_variables(variable["query"]) <= earlier, variable["name"]


def test_multi_value_variables_are_matched_as_regular_expressions() -> None:
    for query in queries():
        assert not re.search(r'[^=!]=\s*"\$', query.expr), f"{query}: use =~ with a variable"


def test_queries_use_documented_metrics_and_recorded_rules() -> None:
    metrics_doc = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(orchestrator_\w+)` \|", metrics_doc, re.MULTILINE))
    recorded = recorded_rules()
    for query in queries():
        for name in re.findall(r"(?<![\w:])orchestrator_\w+", query.expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in documented or base in documented, f"{query}: {name}"
        for name in re.findall(r"\b\w+:\w+:\w+\b", query.expr):
            assert name in recorded, f"{query}: {name} is not a recording rule"


def test_history_reads_only_the_hourly_history_rules_over_windows() -> None:
    # Its 90-day panels must not scan raw counters, and a series recorded once an hour shows in
    # a query only over a window: last_over_time(...[1h]) or a mean over days.
    history_rules = recorded_rules(HISTORY_GROUP)
    [group] = [
        group
        for group in yaml.safe_load(RECORDING_RULES.read_text())["groups"]
        if group["name"] == HISTORY_GROUP
    ]
    assert group["interval"] == "1h"
    found = [query for query in queries() if query.dashboard == "History"]
    assert found
    for query in found:
        assert not re.findall(r"(?<![\w:])orchestrator_\w+", query.expr), f"{query}: raw metric"
        names = re.findall(r"\b\w+:\w+:\w+\b", query.expr)
        assert names and set(names) <= history_rules, f"{query}: {names}"
        for name in names:
            assert re.search(rf"_over_time\({re.escape(name)}\[", query.expr), f"{query}: {name}"


def test_substitution_for_all_leaves_no_variable() -> None:
    for board in dashboards().values():
        for panel in panels(board):
            for target in panel.get("targets") or []:
                if "expr" in target:
                    assert "$" not in substitute_all(target["expr"], board), target["expr"]


def test_the_documentation_names_every_dashboard_and_panel() -> None:
    text = " ".join((ROOT / "docs" / "dashboards.md").read_text().split())
    for board in dashboards().values():
        assert f"`{board['uid']}`" in text
        for panel in panels(board):
            assert panel["title"] in text, f"docs/dashboards.md does not name {panel['title']}"
