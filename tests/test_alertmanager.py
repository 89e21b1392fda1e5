"""alertmanager/: a valid config that routes by severity, one thread per budget or agent, with
inhibition and a Slack message that carries the numbers and the links.

The routing tests ask `amtool config routes test`; the message tests run a real Alertmanager
with the project's config and templates against the Slack stand-in.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from support import AlertmanagerFactory, AlertmanagerServer, SlackMessage, SlackReceiver
from test_prometheus_rules import alert_rules, run_tool

ROOT = Path(__file__).resolve().parents[1]
ALERTMANAGER = ROOT / "alertmanager"
CONFIG = ALERTMANAGER / "alertmanager.yml"
EXTERNAL_URL = "http://alertmanager.example:9093"


def project_config(webhook_url_file: Path, *, wait: str = "1s", interval: str = "1s") -> str:
    """alertmanager.yml as a test runs it: the webhook URL file and the templates by absolute
    path, and every group_wait / group_interval shortened. Nothing else changes."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"]["slack_api_url_file"] = str(webhook_url_file)
    config["templates"] = [str(ALERTMANAGER / pattern) for pattern in config["templates"]]
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        for key, value in (("group_wait", wait), ("group_interval", interval)):
            if key in route:
                route[key] = value
        routes.extend(route.get("routes", []))
    return yaml.safe_dump(config, sort_keys=False)


def slack_text(message: SlackMessage) -> str:
    """Title and text of the message's attachments, the parts a reader sees."""
    attachments = message.body["attachments"]
    return "\n".join(f"{part['title']}\n{part['text']}" for part in attachments)


def _amtool(*arguments: str) -> str:
    result = run_tool("amtool", *arguments, package="prometheus-alertmanager")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# --- the config --------------------------------------------------------------------------------


def test_config_is_valid() -> None:
    output = _amtool("check-config", str(CONFIG))
    assert "SUCCESS" in output and "1 templates" in output


def _receiver_for(*labels: str) -> str:
    return _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels).strip()


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_goes_to_the_receiver_of_its_severity(rule: dict[str, Any]) -> None:
    severity = rule["labels"]["severity"]
    labels = [f"alertname={rule['alert']}", f"severity={severity}", "budget=b", "agent_id=a"]
    assert _receiver_for(*labels) == f"slack-{severity}"


def test_alert_without_severity_still_reaches_slack() -> None:
    assert _receiver_for("alertname=SomethingElse") == "slack-warning"


def test_one_thread_per_alert_and_budget_or_agent() -> None:
    route = yaml.safe_load(CONFIG.read_text())["route"]
    assert route["group_by"] == ["alertname", "budget", "agent_id"]
    assert all("group_by" not in child for child in route["routes"])


def test_every_receiver_is_slack_and_sends_resolved() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    for receiver in config["receivers"]:
        if receiver["name"] == "exporter-actions":
            continue  # the exporter's webhook, below
        [slack] = receiver["slack_configs"]
        assert slack["send_resolved"] is True, receiver["name"]
        assert "api_url" not in slack, "the webhook URL is a secret: api_url_file only"


def test_the_webhook_url_comes_from_a_file_with_a_committed_example() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    secret = Path(config["global"]["slack_api_url_file"])
    assert secret == Path("/etc/alertmanager/secrets/slack_webhook_url")
    example = ALERTMANAGER / "secrets" / "slack_webhook_url.example"
    assert example.read_text().startswith("https://hooks.slack.com/services/")
    assert "alertmanager/secrets/slack_webhook_url\n" in (ROOT / ".gitignore").read_text()


# --- a real Alertmanager -----------------------------------------------------------------------


@pytest.fixture
def alertmanager(
    alertmanager_factory: AlertmanagerFactory, slack_receiver: SlackReceiver, tmp_path: Path
) -> AlertmanagerServer:
    """The project's Alertmanager posting to the Slack stand-in."""
    webhook_url_file = tmp_path / "slack_webhook_url"
    webhook_url_file.write_text(slack_receiver.url + "\n")
    return alertmanager_factory(
        project_config(webhook_url_file), extra_args=[f"--web.external-url={EXTERNAL_URL}"]
    )


def _alert(name: str, severity: str, description: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus sends it, with the annotations of its rule."""
    [rule] = [rule for rule in alert_rules() if rule["alert"] == name]
    annotations = {**rule["annotations"], "description": description}
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": annotations,
        "startsAt": datetime.now(UTC).isoformat(),
    }


def _titled(fragment: str) -> Any:
    return lambda message: fragment in message.body["attachments"][0]["title"]


def test_budget_message_says_what_how_much_which_budget_and_links(
    alertmanager: AlertmanagerServer, slack_receiver: SlackReceiver
) -> None:
    description = "Budget daily (day) has spent $125.00 of its $100.00 limit (125%)."
    labels = {"budget": "daily", "period": "day"}
    alertmanager.post_alerts(
        [_alert("OrchestratorBudgetExceeded", "critical", description, **labels)]
    )

    message = slack_receiver.wait_for(timeout=15)
    text = slack_text(message)
    attachment = message.body["attachments"][0]
    assert attachment["title"] == "[FIRING:1] OrchestratorBudgetExceeded · budget daily"
    assert attachment["title_link"] == "http://localhost:3000/d/orchestrator-costs"
    assert attachment["color"] == "danger"
    assert message.body["channel"] == "#orchestrator-critical"
    assert "A budget has reached its limit." in text and description in text
    assert "budget=`daily` period=`day`" in text
    assert "|Dashboard>" in text and "runbooks.md#orchestratorbudgetexceeded|Runbook>" in text
    silence = text.rsplit("<", 1)[1]
    assert unquote(silence) == (
        f'{EXTERNAL_URL}/#/silences/new?filter={{alertname="OrchestratorBudgetExceeded",'
        'budget="daily"}|Silence this group>'
    )


def test_resolved_alert_sends_a_resolved_message(
    alertmanager: AlertmanagerServer, slack_receiver: SlackReceiver
) -> None:
    alert = _alert(
        "OrchestratorAgentContextWindowCritical", "critical",
        "Agent a-1 (role BUILDER) has filled 97.5% of its context window: 195000 of 200000 tokens.",
        source="default", agent_id="a-1", role="BUILDER",
    )  # fmt: skip
    alertmanager.post_alerts([alert])
    slack_receiver.wait_for(_titled("[FIRING:1] OrchestratorAgentContextWindowCritical"), 15)

    alert["endsAt"] = datetime.now(UTC).isoformat()
    alertmanager.post_alerts([alert])
    message = slack_receiver.wait_for(_titled("[RESOLVED]"), timeout=15)
    assert message.body["attachments"][0]["color"] == "good"
    assert "*Resolved: An agent has filled more than 95%" in slack_text(message)
    assert "agent_id=`a-1`" in slack_text(message)


def test_critical_silences_the_warning_of_the_same_budget_or_agent_only(
    alertmanager: AlertmanagerServer, slack_receiver: SlackReceiver
) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    agent = {"source": "default", "role": "BUILDER"}
    alerts = [
        _alert("OrchestratorBudgetExceeded", "critical", "spent", budget="a", period="day"),
        _alert("OrchestratorBudgetNearlySpent", "warning", "80%", budget="a", period="day"),
        _alert("OrchestratorBudgetProjectedOverrun", "warning", "proj", budget="a", period="day"),
        _alert("OrchestratorBudgetNearlySpent", "warning", "80%", budget="b", period="day"),
        _alert("OrchestratorAgentContextWindowCritical", "critical", "96%", agent_id="x", **agent),
        _alert("OrchestratorAgentContextWindowHigh", "warning", "85%", agent_id="x", **agent),
        _alert("OrchestratorAgentContextWindowHigh", "warning", "85%", agent_id="y", **agent),
    ]
    for alert in alerts:
        alert["endsAt"] = soon
    # The sources first: inhibition applies to what arrives while they fire.
    alertmanager.post_alerts([alerts[0], alerts[4]])
    slack_receiver.wait_for(_titled("OrchestratorAgentContextWindowCritical"), timeout=15)
    alertmanager.post_alerts(alerts)

    slack_receiver.wait_for(_titled("OrchestratorBudgetNearlySpent · budget b"), timeout=15)
    slack_receiver.wait_for(_titled("OrchestratorAgentContextWindowHigh · agent y"), timeout=15)
    time.sleep(2)  # group_interval is 1 s: a message for the silenced ones would be here now
    titles = {message.body["attachments"][0]["title"] for message in slack_receiver.messages}
    assert titles == {
        "[FIRING:1] OrchestratorBudgetExceeded · budget a",
        "[FIRING:1] OrchestratorBudgetNearlySpent · budget b",
        "[FIRING:1] OrchestratorAgentContextWindowCritical · agent x",
        "[FIRING:1] OrchestratorAgentContextWindowHigh · agent y",
    }


def test_alerts_that_act_are_routed_to_the_exporter_only_once_enabled() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    [webhook] = next(receiver["webhook_configs"] for receiver in config["receivers"]
                     if receiver["name"] == "exporter-actions")
    assert webhook["url"].endswith("/api/v1/alertmanager/webhook")
    assert webhook["http_config"]["authorization"]["credentials_file"].startswith(
        "/etc/alertmanager/secrets/")
    stuck = ("alertname=OrchestratorAgentStuck", "severity=warning")
    assert _receiver_for(*stuck) == "slack-warning"  # off as shipped
    assert _receiver_for(*stuck, "actions=enabled") == "exporter-actions,slack-warning"
