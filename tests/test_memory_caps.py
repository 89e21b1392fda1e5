"""What the exporter holds in memory for its clients stays within its cap when flooded past it,
and docs/operations.md ("Caps on what memory holds") names each cap with its value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter import labels, state
from exporter.api import guards
from exporter.api.guards import RateLimiter
from exporter.claude_code import hooks
from exporter.claude_code.hooks import HookReceiver, parse_hook
from exporter.config import Budget
from exporter.control import budget_book, runner
from exporter.control.budget_book import TooManyBudgetsError
from exporter.labels import LabelLimiter, LabelSets
from exporter.otlp import claude_code, cumulative
from exporter.otlp.claude_code import ClaudeCodeReceiver, Defaults, Translation
from exporter.otlp.cumulative import CumulativeCounters, Point, Reservation
from exporter.service import build_exporter
from exporter.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
NOW = 1_750_000_000.0


def test_the_rate_limiter_forgets_the_least_recently_seen_caller(monkeypatch):
    monkeypatch.setattr(guards, "MAX_BUCKETS", 100)
    limiter = RateLimiter(1.0, 2, clock=lambda: 0.0)
    limiter.take("steady")
    limiter.take("steady")  # its bucket is empty now
    for caller in range(1_000):
        limiter.take(f"client:{caller}")
        limiter.take("steady")  # seen again and again: never the least recent
    assert len(limiter._buckets) == 100
    assert limiter.take("steady") > 0  # still limited: its bucket was kept
    assert limiter.take("client:0") == 0  # forgotten: starts full again


def test_the_cumulative_tracker_keeps_at_most_its_series():
    counter = CumulativeCounters(max_series=100, clock=lambda: 0)
    for series in range(1_000):
        counter.advance(Reservation(), b"s%d" % series, Point(1, 2, 1.0))
    assert len(counter._last) == 100
    assert set(counter._last) == {b"s%d" % series for series in range(900, 1_000)}


def test_the_otlp_receiver_remembers_a_bounded_number_of_sessions(monkeypatch):
    monkeypatch.setattr(claude_code, "MAX_KNOWN_SESSIONS", 50)
    receiver = ClaudeCodeReceiver(Defaults(source="s", role="R", task_id=None,
                                           usage_from="metrics"))
    for batch in range(20):
        created = [("s", f"session-{batch}-{index}") for index in range(10)]
        receiver.committed(Translation([], 0, Reservation(), created))
    assert len(receiver._known) == 50
    assert receiver.knows(("s", "session-19-9")) and not receiver.knows(("s", "session-0-0"))


def test_a_session_remembers_a_bounded_number_of_its_agents(monkeypatch):
    monkeypatch.setattr(hooks, "MAX_SESSION_AGENTS", 10)
    receiver = HookReceiver()
    for index in range(50):
        for event in ("SubagentStart", "SubagentStop"):
            receiver.translate(parse_hook({"session_id": "s-1", "hook_event_name": event,
                                           "agent_id": f"a-{index}", "agent_type": "Explore"}),
                               role="BUILDER", source=None, received=NOW + index)
    session = receiver._sessions[("", "s-1")]
    assert len(session.announced) == 10 and len(session.ended) == 10
    assert next(iter(session.announced)) == "s-1"  # the session itself is never forgotten
    assert any(agent.endswith("a-49") for agent in session.ended)


def test_label_combinations_remembered_are_bounded_and_derived_again(monkeypatch):
    monkeypatch.setattr(labels, "MAX_COMBINATIONS", 10)
    derived: list[tuple[str, ...]] = []
    sets = LabelSets(LabelLimiter(1_000), ("source", "role"),
                     lambda values: derived.append(values) or values)
    for index in range(100):
        assert sets.get(("s", f"r{index}")) == ("s", f"r{index}")
    assert len(sets._seen) == 10
    assert sets.get(("s", "r0")) == ("s", "r0") and len(derived) == 101


def test_runtime_budgets_past_the_cap_are_refused_none_dropped(monkeypatch, tmp_path):
    monkeypatch.setattr(budget_book, "MAX_RUNTIME_BUDGETS", 3)
    exporter = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"),
                              registry=CollectorRegistry())
    exporter.start()
    try:
        book = exporter.budgets
        for index in range(3):
            book.put(Budget(f"b{index}", 10.0, "day", (), "alert"), by="admin")
        with pytest.raises(TooManyBudgetsError):
            book.put(Budget("b3", 10.0, "day", (), "alert"), by="admin")
        assert [budget.name for budget in book.budgets] == ["b0", "b1", "b2"]
        assert book.put(Budget("b0", 20.0, "day", (), "alert"), by="admin") is False  # changed
    finally:
        exporter.close()


def _documented_caps() -> dict[str, str]:
    text = DOCS.read_text()
    section = text.split("## Caps on what memory holds", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| [^|]+ \| `([A-Z_]+)` ([\d,]+) \|", section, re.MULTILINE))


def test_the_operations_guide_names_each_cap_with_its_value():
    constants = {
        "MAX_BUCKETS": guards.MAX_BUCKETS, "MAX_SERIES": cumulative.MAX_SERIES,
        "MAX_KNOWN_SESSIONS": claude_code.MAX_KNOWN_SESSIONS,
        "MAX_SESSIONS": hooks.MAX_SESSIONS, "MAX_PENDING_TOOLS": hooks.MAX_PENDING_TOOLS,
        "MAX_TURN_PAYLOADS": hooks.MAX_TURN_PAYLOADS,
        "MAX_OPEN_SUBAGENT_CALLS": hooks.MAX_OPEN_SUBAGENT_CALLS,
        "MAX_SESSION_AGENTS": hooks.MAX_SESSION_AGENTS,
        "MAX_COMBINATIONS": labels.MAX_COMBINATIONS,
        "MAX_RUNTIME_BUDGETS": budget_book.MAX_RUNTIME_BUDGETS,
        "ENDED_MEMORY": state.ENDED_MEMORY, "DELETED_AGENT_MEMORY": state.DELETED_AGENT_MEMORY,
        "REMEMBERED": runner.REMEMBERED}
    defaults = {f"EXPORTER_{name.upper()}": field.default
                for name, field in Settings.model_fields.items()}
    documented = {name: int(value.replace(",", "")) for name, value in _documented_caps().items()}
    assert set(constants) <= set(documented)
    assert documented == {name: constants.get(name, defaults.get(name)) for name in documented}
