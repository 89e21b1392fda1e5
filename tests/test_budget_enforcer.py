"""Budgets with teeth, on a simulated clock: a paused scope once per crossing and resumed when
the period rolls over; new tasks of a spent scope cancelled; admission blocked for that scope
only."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter.callback import MonitorCallback
from exporter.config import parse_budget, parse_config
from exporter.control.enforcer import BudgetEnforcer, blocking
from exporter.control.runner import ControlChannel
from exporter.integrations.orchestrator import AdmissionGate
from exporter.service import Exporter, build_exporter
from exporter.settings import Settings

CONFIG = """
budgets:
  - {name: research-daily, limit_usd: 5, period: day, scope: {task_type: research},
     on_exceed: pause}
  - {name: bugs-daily, limit_usd: 1, period: day, scope: {task_type: bug_fix},
     on_exceed: cancel_new}
  - {name: fleet-daily, limit_usd: 1000, period: day}
"""


@pytest.fixture
def exporter(tmp_path) -> Iterator[Exporter]:
    built = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"),
                           registry=CollectorRegistry(),
                           config=parse_config(yaml.safe_load(CONFIG)))
    built.start()
    built.enforcer.stop()  # the tests check on their own clock (its first check is 1 s away)
    yield built
    built.close()


def spend(exporter: Exporter, task_id: str, task_type: str, usd: float, at: float) -> None:
    callback = MonitorCallback(exporter.pipeline, strict=True)
    callback.emit({"type": "task.submitted", "task_id": task_id, "task_type": task_type,
                   "timestamp": at})
    callback.emit({"type": "agent.created", "agent_id": f"a-{task_id}", "role": "ANALYST",
                   "task_id": task_id, "timestamp": at})
    callback.emit({"type": "agent.usage", "agent_id": f"a-{task_id}", "cost_usd": usd,
                   "timestamp": at})
    assert callback.flush(timeout=10)


def queued(exporter: Exporter) -> list[tuple[str, dict[str, str]]]:
    return [(command.kind, command.target) for command in exporter.commands.list()[0]]


def test_a_pause_budget_pauses_its_scope_once_and_resumes_when_the_day_rolls_over(exporter):
    now = [time.time()]
    enforcer = BudgetEnforcer(state=exporter.state, lock=exporter.lock,
                              queue=exporter.commands, audit=exporter.audit,
                              clock=lambda: now[0])
    spend(exporter, "r-1", "research", 4.0, now[0])
    assert enforcer.check() == 0
    spend(exporter, "r-2", "research", 2.0, now[0])
    assert enforcer.check() == 1
    assert enforcer.check() == 0  # once per crossing, however often it is checked
    assert queued(exporter) == [("fleet.pause", {"task_type": "research"})]
    # it reaches the orchestrator: new research tasks wait at its gate, others go on
    gate = AdmissionGate()  # OrchestratorControl's, which its fleet.pause handler closes
    channel = ControlChannel(exporter.commands, {
        "fleet.pause": lambda command: gate.pause(command["target"]),
        "fleet.resume": lambda command: gate.resume(command["target"])})
    assert channel.run_pending() == 1
    assert not gate.allows(task_type="research") and gate.allows(task_type="bug_fix")
    budgets = exporter.config.budgets
    assert blocking(budgets, exporter.state, exporter.lock, {"task_type": "research"},
                    now[0]) == ["research-daily"]
    assert blocking(budgets, exporter.state, exporter.lock, {"task_type": "bug_fix"},
                    now[0]) == []
    assert blocking(budgets, exporter.state, exporter.lock, {}, now[0]) == []

    now[0] += 86_400  # the next UTC day: nothing spent in it yet
    assert enforcer.check() == 1
    assert enforcer.check() == 0
    assert queued(exporter)[-1] == ("fleet.resume", {"task_type": "research"})
    assert channel.run_pending() == 1 and gate.allows(task_type="research")
    assert blocking(budgets, exporter.state, exporter.lock, {"task_type": "research"},
                    now[0]) == []
    trail = exporter.audit.list()[0]
    assert [(entry.token, entry.action) for entry in trail] == [
        ("budget:research-daily", "command.fleet.pause"),
        ("budget:research-daily", "command.fleet.resume")]


def test_a_cancel_new_budget_cancels_the_tasks_submitted_once_it_is_spent(exporter):
    now = [time.time()]
    enforcer = BudgetEnforcer(state=exporter.state, lock=exporter.lock,
                              queue=exporter.commands, audit=exporter.audit,
                              clock=lambda: now[0])
    spend(exporter, "b-old", "bug_fix", 1.5, now[0] - 10)  # spends it; submitted before
    assert enforcer.check() == 0
    now[0] += 5
    spend(exporter, "b-new", "bug_fix", 0.0, now[0])
    spend(exporter, "d-new", "documentation", 0.0, now[0])
    assert enforcer.check() == 1
    assert enforcer.check() == 0
    assert queued(exporter) == [("task.cancel", {"task_id": "b-new", "source": "default"})]


def test_pauses_are_the_budget_s_own_and_end_with_it(exporter):
    """Two budgets, one's name a prefix of the other's; a limit raised then lowered within one
    period pauses again; a paused budget deleted or changed resumes its scope."""
    now = [time.time()]
    enforcer = BudgetEnforcer(state=exporter.state, lock=exporter.lock,
                              queue=exporter.commands, audit=exporter.audit,
                              clock=lambda: now[0])
    book = exporter.budgets
    book.release = enforcer.release
    research = parse_budget({"name": "r", "limit_usd": 1, "period": "day", "on_exceed": "pause",
                             "scope": {"task_type": "research"}}, "budget")
    docs = parse_budget({"name": "r.docs", "limit_usd": 1, "period": "day",
                         "on_exceed": "pause", "scope": {"task_type": "documentation"}},
                        "budget")
    book.put(research, by="test")
    book.put(docs, by="test")
    spend(exporter, "r-1", "research", 2.0, now[0])
    spend(exporter, "d-1", "documentation", 2.0, now[0])
    assert enforcer.check() == 2
    book.put(dataclasses.replace(docs, limit_usd=10), by="test")  # r.docs resumes, r stays
    assert enforcer.check() == 0
    assert queued(exporter)[-1] == ("fleet.resume", {"task_type": "documentation"})
    book.put(dataclasses.replace(docs, limit_usd=1), by="test")  # lowered again: spent again
    assert enforcer.check() == 1
    assert queued(exporter)[-1] == ("fleet.pause", {"task_type": "documentation"})
    book.delete("r")
    assert queued(exporter)[-1] == ("fleet.resume", {"task_type": "research"})
    assert [kind for kind, _ in queued(exporter)].count("fleet.pause") == 3
