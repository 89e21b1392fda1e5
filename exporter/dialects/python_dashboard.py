"""The Python orchestrator's sample dashboard: its WebSocket frames `{type, data}`.

`agent_update` and `task_update` carry the whole row again on every change (running token
totals, `total_cost` as "$0.0137" for an agent and whole cents for a task); `agent_deleted` and
`task_deleted` carry `{id}`. Datetimes are UTC, written with no offset or with `Z`. Each frame
becomes the canonical events that describe the row: the agent or task, its status, and the
agent's running totals (counted once, as their increase).
"""

from __future__ import annotations

from typing import Any, Final

from exporter.dialects.base import (
    Canonical,
    ForeignEventError,
    Raw,
    Receiver,
    dollars,
    ignored,
    present,
    text,
    timestamp,
)

TYPES: Final = frozenset({"agent_update", "task_update", "agent_deleted", "task_deleted"})
# Task status -> the canonical event that moves a task there (pending: submission only).
_TASK_STEPS: Final = {"in_progress": "task.started", "running": "task.started",
                      "completed": "task.completed", "failed": "task.failed",
                      "cancelled": "task.cancelled"}
_YES: Final = frozenset({"true", "yes", "include", "included", "always"})
_NO: Final = frozenset({"false", "no", "exclude", "excluded", "never"})


def _recognises(raw: Raw) -> bool:
    data = raw.get("data")
    return isinstance(data, dict) and "id" in data and "agent_id" not in data


def _translate(raw: Raw) -> list[Canonical]:
    data: dict[str, Any] = raw["data"]
    kind = raw["type"]
    if kind == "agent_update":
        return _agent(data)
    if kind == "task_update":
        return _task(data)
    if kind == "agent_deleted":
        return [{"type": "agent.deleted", "agent_id": data["id"]}]
    return ignored(raw)  # task_deleted: the row is gone, the run it started goes on


def _agent(row: dict[str, Any]) -> list[Canonical]:
    when = present(timestamp=timestamp(row.get("updated_at")))
    agent_id = row["id"]
    usage = present(input_tokens=row.get("total_input_tokens"),
                    output_tokens=row.get("total_output_tokens"),
                    cache_read_tokens=row.get("cache_read_tokens"),
                    cache_creation_tokens=row.get("cache_creation_tokens"),
                    cost_usd=dollars(row.get("total_cost"), "data.total_cost"))
    return [
        {**when, "type": "agent.created", "agent_id": agent_id, "role": row.get("role"),
         **present(task_id=row.get("task_id"))},
        {**when, "type": "agent.status_changed", "agent_id": agent_id,
         "status": row.get("status")},
        {**when, **usage, "type": "agent.usage", "agent_id": agent_id, "totals": True},
    ]


def _task(row: dict[str, Any]) -> list[Canonical]:
    task_id = row["id"]
    complexity = row.get("complexity")
    submitted = {
        "type": "task.submitted", "task_id": task_id,
        **present(timestamp=timestamp(row.get("created_at")), task_type=row.get("task_type"),
                  complexity=complexity if complexity in ("simple", "complex") else None,
                  analyst=_analyst(row), description=text(row.get("description"))),
    }
    status = row.get("status")
    if status == "pending":
        return [submitted]
    step = _TASK_STEPS.get(status) if isinstance(status, str) else None
    if step is None:
        raise ForeignEventError("data.status", "must be one of pending, "
                                + ", ".join(_TASK_STEPS))
    ended = row.get("completed_at") if step != "task.started" else None
    moved = {"type": step, "task_id": task_id,
             **present(timestamp=timestamp(ended or row.get("updated_at")))}
    if step == "task.failed":
        moved.update(present(error=text(row.get("error"))))
    return [submitted, moved]


def _analyst(row: dict[str, Any]) -> bool | None:
    """Planned roles decide; before the plan, an explicit `include_analyst` (often "auto")."""
    workflow = row.get("workflow")
    if isinstance(workflow, list) and workflow:
        return any(isinstance(role, str) and role.upper() == "ANALYST" for role in workflow)
    choice = row.get("include_analyst")
    if isinstance(choice, bool):
        return choice
    if isinstance(choice, str):
        word = choice.strip().lower()
        return True if word in _YES else False if word in _NO else None
    return None


RECEIVER: Final = Receiver(name="orchestrator_dashboard", types=TYPES, recognises=_recognises,
                           translate=_translate, keyed=lambda raw: True)
