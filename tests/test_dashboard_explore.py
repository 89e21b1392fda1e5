"""The Explore dashboard: its Infinity queries against a real exporter, its datasource, its token
and the data links that lead to it.

The exporter runs as a subprocess with the viewer token docker-compose.yml gives it (the
try-out fallback), and ingests a known mixed stream; every Infinity target of every Explore
panel, its variables set to ids from that stream, is requested with the token Grafana would
send (the secret's try-out file). Rows are taken at `root_selector` and columns at their
`selector`s as the plugin's backend parser does for plain GJSON paths: every panel must get rows
and every row must hold every column the panel reads. Grafana and the plugin themselves cannot
run here; what they are told (provisioning, compose, links) is checked as configuration.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import yaml
from streams import Stream, mixed_stream
from support import ExporterFactory, http_client
from test_dashboards import (
    PROVISIONING,
    ROOT,
    dashboards,
    panels,
    provisioned_datasources,
    queries,
)

from exporter.tokens import digest_of, parse_tokens

INFINITY = "yesoreyeram-infinity-datasource"
EXPLORE = "explore.json"
EXPLORE_UID = "orchestrator-explore"
# Ids the other dashboards hand to Explore as a variable of its own; other labels become its
# `filter`, an API query parameter (grafana/skeleton.py).
ID_VARIABLES = ("agent_id", "task_id", "run_id")
FILTER_PARAMETERS = ("task_type", "workflow")
COLUMN_TYPES = {"string", "number", "timestamp_epoch_s"}
# A plain GJSON path: keys and dots, which the plugin and _at below read alike.
PATH = re.compile(r"\w+(?:\.\w+)*")
REFERENCE = re.compile(r"\$\{(\w+)(?::([\w:]+))?\}")
DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")

Json = Any
Panel = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One Infinity target of one Explore panel."""

    panel: str
    conditional: bool
    url: str
    root_selector: str
    selectors: tuple[str, ...]

    def __str__(self) -> str:
        return f"Explore / {self.panel}"


def explore() -> dict[str, Any]:
    return dashboards()[EXPLORE]


def targets() -> list[Target]:
    found = []
    for panel in panels(explore()):
        for target in panel.get("targets") or []:
            found.append(Target(
                panel=panel["title"],
                conditional="conditional" in (panel.get("tags") or []),
                url=target["url"],
                root_selector=target["root_selector"],
                selectors=tuple(column["selector"] for column in target["columns"]),
            ))
    return found


def explore_variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in explore()["templating"]["list"]}


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _compose_default(text: str) -> str:
    """`text` as docker compose reads it when .env sets none of its variables."""
    return DEFAULTED.sub(lambda match: match.group(2), text)


def _infinity_datasource() -> dict[str, Any]:
    [source] = [s for s in provisioned_datasources() if s["type"] == INFINITY]
    return source


def _token_secret() -> tuple[str, Path]:
    """The secret the Infinity datasource reads its token from, and its try-out file."""
    match = re.fullmatch(r"\$__file\{/run/secrets/(\w+)\}",
                         _infinity_datasource()["secureJsonData"]["bearerToken"])
    assert match, "the token comes from a Docker secret, never from the provisioning file"
    name = match.group(1)
    return name, ROOT / _compose_default(_compose()["secrets"][name]["file"])


def _links(panel: Panel) -> Iterator[tuple[str, str]]:
    """(field name or "" for every field, url) of every data link of a panel."""
    config = panel.get("fieldConfig") or {}
    for link in (config.get("defaults") or {}).get("links") or []:
        yield "", link["url"]
    for override in config.get("overrides") or []:
        for prop in override["properties"]:
            if prop["id"] == "links":
                for link in prop["value"]:
                    yield override["matcher"]["options"], link["url"]


def _columns(panel: Panel) -> set[str]:
    """The column names a table shows: Infinity's column titles, or the renamed labels."""
    names = {c["text"] for t in panel.get("targets") or [] for c in t.get("columns") or []}
    for transformation in panel.get("transformations") or []:
        names |= set(transformation["options"].get("renameByName", {}).values())
    return names


# --- the queries against a real exporter ---


def _stream_values(stream: Stream) -> dict[str, str]:
    """Explore's variables set to ids from the stream, and filters a data link would set."""
    events = stream.all_unique

    def first(types: tuple[str, ...], *keys: str) -> str:
        return next(str(e.get(k)) for e in events if e["type"] in types for k in keys if e.get(k))

    return {
        "agent_id": first(("agent.tool_call", "tool_call"), "agent_id"),
        "task_id": first(("agent.created", "agent_created"), "task_id", "taskId"),
        "run_id": first(("workflow.started",), "executionId"),
        "task_type": first(("task.submitted",), "task_type"),
        "workflow": first(("workflow.started",), "workflowId"),
    }


def _substitute(url: str, values: Mapping[str, str]) -> str:
    """`url` as Grafana sends it with these variable values."""

    def replace(match: re.Match[str]) -> str:
        name, form = match.groups()
        value = values[name]
        if form in (None, "raw", "date:seconds"):
            return value
        if form == "percentencode":
            return quote(value, safe="")
        raise AssertionError(f"the test does not know the format of {match.group(0)}")

    substituted = REFERENCE.sub(replace, url)
    assert "$" not in substituted, f"{url}: a variable the test does not set"
    return substituted


def _at(document: Json, path: str) -> tuple[bool, Json]:
    """(found, value) at a plain GJSON path; "" is the document itself."""
    value = document
    for key in path.split(".") if path else ():
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _rows(
    client: httpx.Client, target: Target, url: str, *, patient: bool = True
) -> tuple[list[Json], list[str]]:
    """The rows the plugin would make of the answer, and what is wrong with them. `patient`
    waits out the rate limit (the test asks faster than a dashboard does)."""
    response = client.get(url)
    while patient and response.status_code == 429:
        time.sleep(float(response.headers["Retry-After"]))
        response = client.get(url)
    if response.status_code != 200:
        return [], [f"{target} {url}: {response.status_code} {response.text[:200]}"]
    found, rows = _at(response.json(), target.root_selector)
    if not found:
        return [], [f"{target} {url}: no {target.root_selector!r} in the answer"]
    rows = rows if isinstance(rows, list) else [rows]  # an object is one row
    problems = []
    for selector in target.selectors:
        missing = sum(not _at(row, selector)[0] for row in rows)
        if missing:
            problems.append(f"{target} {url}: {selector!r} missing in {missing} of {len(rows)}")
    return rows, problems


def test_every_explore_query_answers_rows_with_every_column_it_reads(
    exporter_factory: ExporterFactory,
) -> None:
    tokens = _compose_default(_compose()["services"]["exporter"]["environment"]["EXPORTER_TOKENS"])
    exporter = exporter_factory(env={"EXPORTER_TOKENS": tokens})
    stream = mixed_stream(total=2000)
    for batch in stream.batches:
        assert exporter.post_events(batch).status_code == 200
    ids = _stream_values(stream)
    # The stream names no file: the agent's files, as the Python orchestrator reports them.
    assert exporter.post_events([{"type": "agent.files", "agent_id": ids["agent_id"],
                                  "read": ["/w/a.py"], "written": ["/w/b.py"]}]
                                ).status_code == 200
    now = time.time()
    defaults = {name: v["current"]["value"] for name, v in explore_variables().items()}
    values = {**defaults, **{n: ids[n] for n in ID_VARIABLES},
              "__from": str(int(now - 6 * 3600)), "__to": str(int(now))}
    token = _token_secret()[1].read_text().strip()  # Grafana's $__file{} trims it too
    # The dashboard as it opens from a link, then each choice a user or a link makes.
    variants = [{"filter": f"{name}={ids[name]}"} for name in FILTER_PARAMETERS]
    variants += [{"status": option["value"]} for option in explore_variables()["status"]["options"]]

    problems: list[str] = []
    with http_client(exporter.url) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for target in targets():  # one load of the dashboard stays within the rate limit
            url = _substitute(target.url, values)
            rows, wrong = _rows(client, target, url, patient=False)
            problems += wrong or ([] if rows else [f"{target} {url}: no rows"])
        for variant in variants:
            for target in targets():
                if any(f"${{{name}" in target.url for name in variant):
                    rows, wrong = _rows(client, target, _substitute(target.url,
                                                                    {**values, **variant}))
                    # Every filter a link sets finds rows; a status may rightly have none.
                    empty = not rows and "filter" in variant
                    problems += wrong + ([f"{target} {variant}: no rows"] if empty else [])
    assert not problems, "\n".join(problems)


def test_only_the_panels_of_one_agent_task_or_run_may_be_empty() -> None:
    # They are until one is chosen (the API answers 404 for an empty id), and say so.
    for target in targets():
        uses_an_id = any(f"${{{name}" in target.url for name in ID_VARIABLES)
        assert target.conditional == uses_an_id, target


# --- the panels' queries as Grafana and the plugin read them ---


def test_explore_panels_are_infinity_tables_on_the_provisioned_datasource() -> None:
    source = _infinity_datasource()
    ref = {"type": INFINITY, "uid": source["uid"]}
    board = explore()
    assert not [v for v in board["templating"]["list"] if v["type"] in ("query", "datasource")]
    for panel in panels(board):
        where = f"Explore / {panel['title']}"
        assert panel["type"] == "table" and panel["datasource"] == ref, where
        [target] = panel["targets"]
        assert target["datasource"] == ref, where
        assert (target["type"], target["source"], target["parser"], target["format"]) == (
            "json", "url", "backend", "table"), where
        assert target["url_options"]["method"] == "GET", where
        # Relative to the datasource's URL: a panel cannot send the token elsewhere.
        assert target["url"].startswith("/api/v1/"), where
        assert target["root_selector"] == "" or PATH.fullmatch(target["root_selector"]), where
        texts = [column["text"] for column in target["columns"]]
        assert len(texts) == len(set(texts)), where
        for column in target["columns"]:
            assert PATH.fullmatch(column["selector"]), f"{where}: {column['selector']}"
            assert column["type"] in COLUMN_TYPES, f"{where}: {column['type']}"
        [organize] = [t for t in panel["transformations"] if t["id"] == "organize"]
        assert list(organize["options"]["indexByName"]) == sorted(texts), where


def test_every_dashboard_query_is_run_by_one_of_the_two_live_tests() -> None:
    promql = {(q.dashboard, q.panel, q.ref_id) for q in queries()}
    for board in dashboards().values():
        for panel in panels(board):
            for target in panel.get("targets") or []:
                key = (board["title"], panel["title"], target["refId"])
                if target["datasource"]["type"] == INFINITY:
                    assert board["uid"] == EXPLORE_UID and key not in promql, key
                else:  # test_dashboards_live.py evaluates it
                    assert target["datasource"]["type"] == "prometheus" and key in promql, key
    assert len(targets()) == len(list(panels(explore())))


# --- provisioning and compose ---


def test_the_provisioning_files_are_valid_yaml() -> None:
    files = sorted(PROVISIONING.rglob("*.yml")) + sorted(PROVISIONING.rglob("*.yaml"))
    assert files
    for path in files:
        document = yaml.safe_load(path.read_text())
        assert document["apiVersion"] == 1, path
        assert document.get("datasources") or document.get("providers"), path


def test_the_infinity_datasource_sends_its_token_only_to_the_exporter() -> None:
    source = _infinity_datasource()
    exporter = _compose()["services"]["exporter"]
    port = exporter["command"][exporter["command"].index("--port") + 1]
    assert source["url"] == f"http://exporter:{port}"
    assert source["access"] == "proxy" and source["editable"] is False
    settings = source["jsonData"]
    assert settings["auth_method"] == "bearerToken"
    # The plugin checks a request's URL against each entry as a prefix: the slash stops
    # http://exporter:80889 from passing for http://exporter:8088.
    assert settings["allowedHosts"] == [f"{source['url']}/"]
    assert settings["customHealthCheckUrl"].startswith(settings["allowedHosts"][0])
    assert set(source["secureJsonData"]) == {"bearerToken"}


def test_grafana_gets_the_token_as_a_secret_and_the_exporter_its_viewer_digest() -> None:
    compose = _compose()
    name, try_out = _token_secret()
    assert name in compose["services"]["grafana"]["secrets"]
    assert try_out.is_file(), try_out
    own = try_out.with_suffix("")  # where docs/dashboards.md says to put a real token
    assert subprocess.run(["git", "check-ignore", "-q", str(own)], cwd=ROOT).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", str(try_out)], cwd=ROOT).returncode == 1
    environment = compose["services"]["exporter"]["environment"]
    [token] = parse_tokens(json.loads(_compose_default(environment["EXPORTER_TOKENS"])),
                           "EXPORTER_TOKENS")
    assert token.role == "viewer"
    assert token.digest == digest_of(try_out.read_text().strip())
    # The demo fleet, which shares the exporter's environment anchor, gets no viewer token.
    assert "EXPORTER_TOKENS" not in compose["services"]["demo"]["environment"]


def test_grafana_installs_a_pinned_infinity_plugin_its_version_can_load() -> None:
    grafana = _compose()["services"]["grafana"]
    version = tuple(int(part) for part in grafana["image"].rpartition(":")[2].split("."))
    # plugins.preinstall (GF_PLUGINS_PREINSTALL) needs Grafana 11.5; Infinity 3.7.2 needs 11.6.
    assert version < (11, 5), "use GF_PLUGINS_PREINSTALL from Grafana 11.5 on"
    plugin, installed = grafana["environment"]["GF_INSTALL_PLUGINS"].split()
    assert plugin == INFINITY
    assert re.fullmatch(r"3\.7\.[01]", installed), installed


# --- data links ---


def test_agents_task_types_and_workflows_link_to_explore_with_its_variables() -> None:
    variables = explore_variables()
    linked: set[str] = set()
    for board in dashboards().values():
        for panel in panels(board):
            for field, url in _links(panel):
                where = f"{board['title']} / {panel['title']}: {url}"
                parts = urlsplit(url)
                assert parts.path == f"/d/{EXPLORE_UID}", where
                query = parts.query.split("&")
                assert query[0] == "${__url_time_range}", where
                set_here = [part.partition("=") for part in query[1:] if part.startswith("var-")]
                assert len(set_here) == 1, where
                name, _, value = set_here[0]
                name = name.removeprefix("var-")
                assert name in variables, where
                if name == "filter":
                    parameter, _, value = unquote(value).partition("=")
                    assert parameter in FILTER_PARAMETERS, where
                    name = parameter
                if field:  # a table column: the clicked cell
                    assert value == "${__value.raw}" and field in _columns(panel), where
                else:  # a series: its label, which the panel's queries keep
                    assert value == f"${{__field.labels.{name}}}", where
                    legends = " ".join(t.get("legendFormat", "") for t in panel["targets"])
                    assert f"{{{{{name}}}}}" in legends, where
                if board["uid"] == EXPLORE_UID:  # within Explore the other choices stay
                    kept = {f"${{{other}:queryparam}}" for other in variables if other != name}
                    assert kept <= set(query), where
                else:
                    linked.add(name)
    assert linked == {"agent_id", "task_type", "workflow"}
