"""What the exporter holds in memory for its clients stays within its cap when flooded past it,
and docs/operations.md ("Caps on what memory holds") names each cap with its value."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from support import ExporterFactory, http_client, wait_until

from exporter import labels, state
from exporter.api import guards
from exporter.api.guards import RateLimiter
from exporter.claude_code import hooks
from exporter.claude_code.hooks import HookReceiver, parse_hook
from exporter.config import Budget
from exporter.control import budget_book, runner
from exporter.control.budget_book import TooManyBudgetsError
from exporter.events import validate_batch
from exporter.labels import LabelLimiter, LabelSets
from exporter.ledger import Ledger, dedup, make_engine, migrate
from exporter.ledger.store import Part
from exporter.otlp import claude_code, cumulative
from exporter.otlp.claude_code import ClaudeCodeReceiver, Defaults, Translation
from exporter.otlp.cumulative import CumulativeCounters, Point, Reservation
from exporter.pricing import PriceTable
from exporter.reads import stream
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


def test_a_turn_and_its_open_agent_calls_are_bounded(monkeypatch):
    monkeypatch.setattr(hooks, "MAX_TURN_PAYLOADS", 5)
    monkeypatch.setattr(hooks, "MAX_OPEN_SUBAGENT_CALLS", 3)
    receiver = HookReceiver()
    for index in range(20):
        receiver.translate(parse_hook({
            "session_id": "s-1", "hook_event_name": "PreToolUse", "tool_name": "Task",
            "tool_use_id": f"toolu_{index}", "tool_input": {"subagent_type": "Explore"}}),
            role="BUILDER", source=None, received=NOW)
    for index in range(20):  # in the turn of the last PreToolUse
        receiver.translate(parse_hook({"session_id": "s-1", "hook_event_name": "Notification",
                                       "message": f"note {index}"}),
                           role="BUILDER", source=None, received=NOW)
    session = receiver._sessions[("", "s-1")]
    assert len(session.seen) == 5
    assert list(session.open_calls) == ["toolu_17", "toolu_18", "toolu_19"]


def test_ended_tasks_and_runs_and_deleted_agents_remembered_are_bounded(monkeypatch):
    monkeypatch.setattr(state, "ENDED_MEMORY", 10)
    monkeypatch.setattr(state, "DELETED_AGENT_MEMORY", 5)
    fleet = state.FleetState(prices=PriceTable({}), budgets=(), label_value_limit=100)
    raws: list[dict[str, object]] = []
    for index in range(50):
        raws += [{"type": "task.submitted", "task_id": f"t{index}", "timestamp": NOW},
                 {"type": "task.completed", "task_id": f"t{index}", "timestamp": NOW + 1},
                 {"type": "workflow.started", "run_id": f"r{index}", "workflow": "w",
                  "timestamp": NOW},
                 {"type": "workflow.completed", "run_id": f"r{index}", "timestamp": NOW + 1},
                 {"type": "agent.created", "agent_id": f"a{index}", "role": "BUILDER",
                  "timestamp": NOW},
                 {"type": "agent.deleted", "agent_id": f"a{index}", "timestamp": NOW + 1}]
    events, problems = validate_batch(raws, NOW + 2)
    assert problems == []
    fleet.apply_all(events)
    assert (len(fleet.ended_tasks), len(fleet.ended_runs), len(fleet.deleted_agents)) == \
        (10, 10, 5)
    assert (fleet.tasks, fleet.runs, fleet.agents) == ({}, {}, {})
    assert ("default", "t49") in fleet.ended_tasks and ("default", "t0") not in fleet.ended_tasks


def test_a_command_runner_remembers_a_bounded_number_of_outcomes(monkeypatch):
    monkeypatch.setattr(runner, "REMEMBERED", 10)
    ran: list[str] = []
    commands = runner.CommandRunner({"task.submit": lambda command: ran.append(command["id"])})
    for index in range(100):
        commands.run({"id": f"c{index}", "kind": "task.submit"})
    commands.run({"id": "c99", "kind": "task.submit"})  # remembered: not run again
    commands.run({"id": "c0", "kind": "task.submit"})  # forgotten: runs again
    assert len(commands._done) == 10 and ran.count("c99") == 1 and ran.count("c0") == 2


def test_recent_idempotency_keys_are_merged_to_disk_at_the_cap(monkeypatch, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(engine)
    ledger = Ledger(engine)
    ledger._ids = dedup.IdSet(merge_keys=20)
    held = []
    for batch in range(20):
        raws = [{"type": "log.entry", "id": f"e{batch}-{index}", "level": "info",
                 "message": "m"} for index in range(5)]
        events, _ = validate_batch(raws, NOW)
        ledger.write_events([Part(events, NOW)])
        held.append(len(ledger._ids.recent) + ledger._ids.merging_keys())
    ledger.close()
    # The cap, the merge's keys while it is written, and the batch written meanwhile.
    assert max(held) <= 2 * 20 + 5
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM event_ids")).scalar() >= 80


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


def test_connections_past_the_cap_get_503_until_one_closes(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env={"EXPORTER_MAX_CONNECTIONS": "4"})
    headers = {"Authorization": f"Bearer {exporter.token}"}
    with http_client() as streams, contextlib.ExitStack() as open_streams:
        for _ in range(3):  # each holds its connection for as long as it is read
            stream = open_streams.enter_context(
                streams.stream("GET", f"{exporter.url}/api/v1/stream", headers=headers))
            assert stream.status_code == 200
        with http_client() as other:
            refused = other.get(f"{exporter.url}/health")
    assert refused.status_code == 503

    def served() -> bool:
        with http_client() as client:
            return client.get(f"{exporter.url}/health").status_code == 200
    assert wait_until(served, 10, describe="/health served once the streams closed")


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
        "REMEMBERED": runner.REMEMBERED, "MERGE_KEYS": dedup.MERGE_KEYS,
        "PENDING_EVENTS": stream.PENDING_EVENTS}
    defaults = {f"EXPORTER_{name.upper()}": field.default
                for name, field in Settings.model_fields.items()}
    documented = {name: int(value.replace(",", "")) for name, value in _documented_caps().items()}
    assert set(constants) <= set(documented)
    assert documented == {name: constants.get(name, defaults.get(name)) for name in documented}
