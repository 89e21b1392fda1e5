"""From an event to Slack: the real exporter, Prometheus with the project's rules and
Alertmanager with the project's config, posting to the Slack stand-in.

Only addresses and intervals differ from production: Prometheus scrapes and evaluates every
second, Alertmanager waits one second before it sends a group. The alert expressions and their
`for:` are the project's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import (
    AlertmanagerFactory,
    ExporterFactory,
    ExporterProcess,
    PrometheusFactory,
    SlackMessage,
    SlackReceiver,
)
from test_alertmanager import project_config, slack_text

ROOT = Path(__file__).resolve().parents[1]
BUDGET = "e2e-daily"
EXPORTER_CONFIG = f"budgets:\n  - {{name: {BUDGET}, limit_usd: 10, period: day}}\n"
CONTEXT_LIMIT = 200_000

pytestmark = pytest.mark.integration


def prometheus_config(exporter: str, alertmanager: str) -> str:
    """prometheus/prometheus.yml with the test's addresses and one-second intervals."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": [exporter]}]
    [manager] = config["alerting"]["alertmanagers"]
    manager["static_configs"] = [{"targets": [alertmanager]}]
    return yaml.safe_dump(config, sort_keys=False)


def _titled(fragment: str) -> Callable[[SlackMessage], bool]:
    return lambda message: fragment in message.body["attachments"][0]["title"]


def _post(exporter: ExporterProcess, *events: dict[str, Any]) -> None:
    response = exporter.post_events(list(events))
    assert response.status_code == 200, response.text


def test_budget_overrun_and_context_breach_reach_slack(
    exporter_factory: ExporterFactory,
    prometheus_factory: PrometheusFactory,
    alertmanager_factory: AlertmanagerFactory,
    slack_receiver: SlackReceiver,
    tmp_path: Path,
) -> None:
    exporter = exporter_factory(config=EXPORTER_CONFIG)
    webhook_url_file = tmp_path / "slack_webhook_url"
    webhook_url_file.write_text(slack_receiver.url)
    alertmanager = alertmanager_factory(project_config(webhook_url_file))
    rules = {f"rules/{path.name}": path for path in (ROOT / "prometheus" / "rules").glob("*.yml")}
    prometheus = prometheus_factory(
        prometheus_config(exporter.address, alertmanager.address), files=rules
    )
    prometheus.wait_for(f'budget:orchestrator_budget_spent:ratio{{budget="{BUDGET}"}}', timeout=30)

    # A budget overrun: $12.50 against a $10 daily budget, in one usage event.
    _post(exporter, {"type": "agent.created", "agent_id": "spender", "role": "BUILDER",
                     "model": "claude-sonnet-4-5"})  # fmt: skip
    spent_at = time.monotonic()
    _post(exporter, {"type": "agent.usage", "agent_id": "spender", "cost_usd": 12.5})
    message = slack_receiver.wait_for(_titled("OrchestratorBudgetExceeded"), timeout=30)
    print(f"\nspend to Slack: {time.monotonic() - spent_at:.1f} s\n{slack_text(message)}")
    text = slack_text(message)
    assert f"[FIRING:1] OrchestratorBudgetExceeded · budget {BUDGET}" in text
    assert f"Budget {BUDGET} (day) has spent $12.50 of its $10.00 limit (125%)." in text

    # A context-window breach: 98% of 200k tokens, then a compaction down to 10%.
    _post(exporter,
          {"type": "agent.created", "agent_id": "reader", "role": "ANALYST",
           "model": "claude-opus-4-1", "context_limit_tokens": CONTEXT_LIMIT},
          {"type": "agent.usage", "agent_id": "reader", "input_tokens": 1000,
           "context_tokens": 196_000})  # fmt: skip
    breached_at = time.monotonic()
    message = slack_receiver.wait_for(
        _titled("[FIRING:1] OrchestratorAgentContextWindowCritical · agent reader"), timeout=30
    )
    print(f"context breach to Slack: {time.monotonic() - breached_at:.1f} s")
    text = slack_text(message)
    assert "Agent reader (role ANALYST) has filled 98% of its context window" in text
    assert f"196000 of {CONTEXT_LIMIT} tokens" in text

    _post(exporter, {"type": "agent.usage", "agent_id": "reader", "context_tokens": 20_000})
    recovered_at = time.monotonic()
    message = slack_receiver.wait_for(
        _titled("[RESOLVED] OrchestratorAgentContextWindowCritical · agent reader"), timeout=30
    )
    print(f"recovery to Slack: {time.monotonic() - recovered_at:.1f} s")
    assert "agent_id=`reader`" in slack_text(message)

    # The budget's 80% warning fired with it, silenced by the critical alert of the same budget.
    firing = {alert["labels"]["alertname"] for alert in prometheus.alerts()}
    assert "OrchestratorBudgetNearlySpent" in firing
    titles = [message.body["attachments"][0]["title"] for message in slack_receiver.messages]
    assert not [title for title in titles if "OrchestratorBudgetNearlySpent" in title], titles
