"""docs/runbooks.md: a section for every alert, and every alert's runbook_url lands on one."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_prometheus_rules import alert_rules, undocumented_metrics

RUNBOOKS = Path(__file__).resolve().parents[1] / "docs" / "runbooks.md"


def _sections() -> dict[str, str]:
    """Level-2 sections by heading: the heading is the alert name."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_a_section_and_every_section_an_alert() -> None:
    assert set(_sections()) == {rule["alert"] for rule in alert_rules()}


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_runbook_url_points_at_the_alerts_section(rule: dict[str, str]) -> None:
    url = urlsplit(rule["annotations"]["runbook_url"])
    assert url.path.endswith("/docs/runbooks.md")
    anchors = {_anchor(heading): heading for heading in _sections()}
    assert anchors.get(url.fragment) == rule["alert"]


@pytest.mark.parametrize("alert", sorted(_sections()))
def test_section_says_what_it_means_where_to_look_and_what_to_do(alert: str) -> None:
    text = _sections()[alert]
    assert "**What it means.**" in text
    assert "**Look first.**" in text and "```promql" in text
    assert "**What to do.**" in text


def test_runbook_queries_use_documented_metrics() -> None:
    assert not undocumented_metrics(RUNBOOKS.read_text())
