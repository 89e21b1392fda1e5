"""Whether a command's target is something the fleet state knows to be there and not ended."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.fairlock import FairLock
from exporter.state import FleetState


@dataclass(frozen=True, slots=True)
class TargetProblem:
    """404: the ledger knows nothing of it; 409: it has ended."""

    status: int
    reason: str


def check_target(kind: str, target: dict[str, str], state: FleetState,
                 lock: FairLock) -> TargetProblem | None:
    source = target.get("source", "default")
    with lock:
        if kind == "task.cancel":
            key = (source, target["task_id"])
            return _judge(key in state.tasks, key in state.ended_tasks, "task", key[1])
        if kind == "workflow.cancel":
            key = (source, target["run_id"])
            return _judge(key in state.runs, key in state.ended_runs, "workflow run", key[1])
        if kind == "step.retry":  # a step of a run that ended (failed) may be run again
            key = (source, target["run_id"])
            known = key in state.runs or key in state.ended_runs
            return None if known else TargetProblem(404, f"no workflow run {key[1]!r} is known")
        if kind == "agent.delete":
            key = (source, target["agent_id"])
            return _judge(key in state.agents, key in state.deleted_agents, "agent", key[1])
    return None


def _judge(open_: bool, ended: bool, what: str, name: str) -> TargetProblem | None:
    if open_:
        return None
    if ended:
        return TargetProblem(409, f"the {what} {name!r} has ended already")
    return TargetProblem(404, f"no {what} {name!r} is known")
