"""The stuck-agent and context-window alerts fire on a Claude Code session: its hooks drive a
real exporter, and the series /metrics then shows for it are what a promtool unit test of the
shipped rules is given (the values over time are the scenario's: silent since the start)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from support import parse_metrics
from test_claude_code_hooks import assistant_line, post_hook, write_transcript
from test_prometheus_rules import RULE_FILES, run_tool

SESSION = "7a9c1e3b-5d2f-4a6c-8e0b-1d3f5a7c9e42"
GAUGES = ("orchestrator_agent_info", "orchestrator_agent_last_activity_timestamp_seconds",
          "orchestrator_agent_context_tokens", "orchestrator_agent_context_limit_tokens")
SCRAPE = {"job": "orchestrator-exporter", "instance": "exporter:8088"}
RUNBOOK = "https://github.com/orchestrator-exporter/orchestrator-exporter/blob/main/docs/runbooks.md"


def session_series(text: str) -> dict[str, tuple[dict[str, str], float]]:
    """The session's per-agent series as scraped: name -> (labels with the scrape's, value)."""
    found: dict[str, tuple[dict[str, str], float]] = {}
    for (name, labels), value in parse_metrics(text).items():
        if name in GAUGES and dict(labels).get("agent_id") == SESSION:
            found[name] = ({**dict(labels), **SCRAPE}, value)
    assert set(found) == set(GAUGES), found
    return found


def _selector(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def unit_test(series: dict[str, tuple[dict[str, str], float]]) -> dict[str, Any]:
    groups = [group["name"] for path in RULE_FILES
              for group in yaml.safe_load(path.read_text())["groups"]]
    values = {"orchestrator_agent_info": "1x20",
              "orchestrator_agent_last_activity_timestamp_seconds": "0x20"}  # silent since 0
    labels, context = series["orchestrator_agent_context_tokens"]
    limit = series["orchestrator_agent_context_limit_tokens"][1]
    alert_labels = {key: labels[key] for key in ("source", "agent_id", "role", *SCRAPE)}
    return {
        "rule_files": [str(path) for path in RULE_FILES],
        "evaluation_interval": "1m",
        "group_eval_order": sorted(groups, key=lambda name: name.endswith(".alerts")),
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": _selector(name, labels),
                              "values": values.get(name, f"{value:.0f}x20")}
                             for name, (labels, value) in series.items()],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "OrchestratorAgentStuck", "exp_alerts": []},
                {"eval_time": "11m", "alertname": "OrchestratorAgentStuck", "exp_alerts": [{
                    "exp_labels": {"severity": "warning", **alert_labels},
                    "exp_annotations": {
                        "summary": "A running agent has shown no activity for 10 minutes.",
                        "description": f"Agent {SESSION} (role CLAUDE_CODE, source default) is "
                        "running but its last event was 11m 0s ago.",
                        "runbook_url": f"{RUNBOOK}#orchestratoragentstuck",
                        "dashboard_url": "http://localhost:3000/d/orchestrator-agents"}}]},
                {"eval_time": "1m", "alertname": "OrchestratorAgentContextWindowCritical",
                 "exp_alerts": [{
                     "exp_labels": {"severity": "critical", **alert_labels},
                     "exp_annotations": {
                         "summary": "An agent has filled more than 95% of its context window.",
                         "description": f"Agent {SESSION} (role CLAUDE_CODE) has filled 97.5% of "
                         f"its context window: {context:.0f} of {limit:.0f} tokens.",
                         "runbook_url": f"{RUNBOOK}#orchestratoragentcontextwindowcritical",
                         "dashboard_url": "http://localhost:3000/d/orchestrator-agents"}}]},
            ]}],
    }


def test_a_silent_session_near_its_window_fires_the_stuck_and_context_alerts(
        exporter_factory, tmp_path: Path):
    transcripts = tmp_path / "projects"
    transcripts.mkdir()
    exporter = exporter_factory(env={"EXPORTER_TRANSCRIPT_ROOTS": f'["{transcripts}"]'})
    path = write_transcript(transcripts, SESSION, [assistant_line(
        SESSION, model="claude-sonnet-4-5-20250929", input_tokens=2, cache_read=190_000,
        cache_write=5_000)])
    common = {"session_id": SESSION, "transcript_path": str(path), "cwd": "/home/dev/shop"}
    for hook in ({"hook_event_name": "SessionStart", "source": "startup",
                  "model": "claude-sonnet-4-5"},
                 {"hook_event_name": "UserPromptSubmit", "prompt": "Run the migration"},
                 {"hook_event_name": "PreToolUse", "tool_name": "Bash",
                  "tool_use_id": "toolu_01Hangs",
                  "tool_input": {"command": "./migrate.sh --all", "description": "Migrate"}}):
        status, answer = post_hook(exporter, {**common, **hook}, secret=exporter.token)
        assert status == 200, answer

    series = session_series(exporter.metrics_text())
    info = series["orchestrator_agent_info"][0]
    assert (info["role"], info["model"], info["status"]) == \
        ("CLAUDE_CODE", "claude-sonnet-4-5", "running")
    assert series["orchestrator_agent_context_tokens"][1] == 195_002
    assert series["orchestrator_agent_context_limit_tokens"][1] == 200_000

    test_file = tmp_path / "claude_code_session.yml"
    test_file.write_text(yaml.safe_dump(unit_test(series), sort_keys=False))
    result = run_tool("promtool", "test", "rules", str(test_file), package="prometheus")
    assert result.returncode == 0, result.stdout + result.stderr
