"""Alerts that act: Alertmanager's webhook payload turned into commands, by the configured
mapping (`alert_actions` in the config file).

The target comes from the alert's labels, or from what the fleet state knows: a stuck agent's
alert names the agent, and `task.cancel` cancels the task it works on; a budget's alert names the
budget, and `fleet.pause` pauses that budget's scope. Each command's idempotency key is made of
the alert's fingerprint and start, so Alertmanager's repeats of one alert make one command.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.config import AlertAction, AlertActions, Budget
from exporter.control.commands import TARGETS, CommandError, CommandRequest
from exporter.fairlock import FairLock
from exporter.state import FleetState

MAX_ALERTS: Final = 1_000
SCOPE_LABELS: Final = ("role", "model", "task_type", "workflow")


@dataclass(frozen=True, slots=True)
class Planned:
    """What one firing alert becomes under one action: a command, or why none."""

    alert: str
    labels: dict[str, str]
    request: CommandRequest | None
    reason: str = ""


def plan(payload: object, actions: AlertActions, *, budgets: tuple[Budget, ...],
         state: FleetState, lock: FairLock) -> list[Planned]:
    """The commands the firing alerts of a webhook payload call for (resolved ones: none)."""
    alerts = payload.get("alerts") if isinstance(payload, Mapping) else None
    if not isinstance(alerts, list) or len(alerts) > MAX_ALERTS:
        raise CommandError([{"field": "alerts", "reason": "Alertmanager's webhook payload: a "
                             f"list of at most {MAX_ALERTS} alerts"}])
    planned: list[Planned] = []
    for alert in alerts:
        status = alert.get("status") if isinstance(alert, Mapping) else None
        if status not in ("firing", "resolved"):
            continue
        assert isinstance(alert, Mapping)
        raw_labels = alert.get("labels")
        labels = {str(key): str(value) for key, value in raw_labels.items()} \
            if isinstance(raw_labels, Mapping) else {}
        name = labels.get("alertname", "")
        for action in actions.actions:
            if action.alert != name:
                continue
            if status == "firing":
                planned.append(_planned(action, action.command, alert, labels, budgets, state,
                                        lock))
            elif action.command == "fleet.pause":  # what an alert paused, its end resumes
                planned.append(_planned(action, "fleet.resume", alert, labels, budgets, state,
                                        lock))
    return planned


def _planned(action: AlertAction, kind: str, alert: Mapping[str, Any], labels: dict[str, str],
             budgets: tuple[Budget, ...], state: FleetState, lock: FairLock) -> Planned:
    target = _target(action.command, labels, budgets, state, lock)
    if target is None:
        return Planned(action.alert, labels, None, f"its labels name no target for {kind}")
    required, optional = TARGETS[kind]
    target = {key: value for key, value in target.items() if key in (*required, *optional)}
    identity = f"{alert.get('fingerprint') or sorted(labels.items())}|{alert.get('startsAt')}"
    key = "alert:" + hashlib.blake2b(f"{identity}|{kind}".encode(), digest_size=16).hexdigest()
    request = CommandRequest(kind, target, {"alert": action.alert, "labels": labels},
                             action.ttl_seconds, key)
    return Planned(action.alert, labels, request)


def _target(command: str, labels: dict[str, str], budgets: tuple[Budget, ...],
            state: FleetState, lock: FairLock) -> dict[str, str] | None:
    source = {"source": labels["source"]} if "source" in labels else {}
    if command == "task.cancel":
        task_id = labels.get("task_id") or _task_of_agent(labels, state, lock)
        return None if task_id is None else {"task_id": task_id, **source}
    if command == "agent.delete":
        return {"agent_id": labels["agent_id"], **source} if "agent_id" in labels else None
    if command == "workflow.cancel":
        return {"run_id": labels["run_id"], **source} if "run_id" in labels else None
    budget = next((budget for budget in budgets if budget.name == labels.get("budget")), None)
    if budget is not None:
        return dict(budget.scope) or None  # a fleet-wide budget: never the whole fleet
    scope: dict[str, str] = {key: labels[key] for key in SCOPE_LABELS if key in labels}
    return scope or None  # never the whole fleet from an alert that names nothing


def _task_of_agent(labels: dict[str, str], state: FleetState,
                   lock: FairLock) -> str | None:
    if "agent_id" not in labels:
        return None
    with lock:
        agent = state.agents.get((labels.get("source", "default"), labels["agent_id"]))
        return None if agent is None else agent.task_id
