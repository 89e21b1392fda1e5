"""Budgets with teeth: what a budget's `on_exceed` does when its spend crosses the limit.

- `pause`: one `fleet.pause` of the budget's scope is queued per crossing; one `fleet.resume`
  when the spend is under the limit again (the period rolled over, or the limit was raised).
- `cancel_new`: every task of the scope submitted while the budget is spent gets a
  `task.cancel`. A task is matched by its `task_type` (and source): role, model and workflow
  are not known when a task is submitted, so a scope of those alone cancels nothing.

Events are always recorded, never refused, over budget. Every command is made idempotent by
its key (budget, period, limit; or the task), so checking again, or after a restart, queues
nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from exporter.config import Budget
from exporter.control.audit import Actor, AuditTrail
from exporter.control.commands import DEFAULT_TTL_SECONDS, Command, CommandRequest
from exporter.control.queue import CommandQueue
from exporter.fairlock import FairLock
from exporter.pricing import NANO_PER_USD
from exporter.state import FleetState

log = logging.getLogger(__name__)

CHECK_SECONDS: Final = 1.0
ACTING: Final = frozenset({"pause", "cancel_new"})


def exceeded(budget: Budget, state: FleetState, now: float) -> bool:
    """Call with the state lock held."""
    return state.budgets.spent_nano(budget, now) >= round(budget.limit_usd * NANO_PER_USD)


def blocking(budgets: tuple[Budget, ...], state: FleetState, lock: FairLock,
             dimensions: dict[str, str], now: float) -> list[str]:
    """The acting budgets spent whose scope these dimensions fall in (every scope key given
    and equal): what admission answers."""
    with lock:
        return [budget.name for budget in budgets if budget.on_exceed in ACTING
                and all(dimensions.get(key) == value for key, value in budget.scope)
                and exceeded(budget, state, now)]


class BudgetEnforcer:
    """Checks the acting budgets every `CHECK_SECONDS` and queues their commands."""

    def __init__(self, *, state: FleetState, lock: FairLock, queue: CommandQueue,
                 audit: AuditTrail, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.lock = lock
        self.queue = queue
        self.audit = audit
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # When each budget was first seen spent: its tasks submitted since are the new ones.
        self._spent_since: dict[str, float] = {}

    @property
    def budgets(self) -> tuple[Budget, ...]:
        """The acting budgets in force (they change at runtime: BudgetBook)."""
        return tuple(budget for budget in self.state.budgets.budgets
                     if budget.on_exceed in ACTING)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="budget-enforcer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(CHECK_SECONDS):
            try:
                self.check()
            except Exception:  # the ledger busy for a moment: the next check acts
                log.exception("checking the budgets failed")

    def check(self) -> int:
        """Queue what the budgets call for now; how many commands were new."""
        now = self.clock()
        queued = 0
        for budget in self.budgets:
            with self.lock:
                spent = exceeded(budget, self.state, now)
                if not spent:
                    self._spent_since.pop(budget.name, None)
                since = self._spent_since.setdefault(budget.name, now) if spent else now
                new_tasks = self._tasks_in_scope(budget, since) if spent else []
            if budget.on_exceed == "pause":
                queued += self._pause_or_resume(budget, spent, now)
            else:
                queued += sum(self._issue(budget, CommandRequest(
                    "task.cancel", {"task_id": task_id, "source": source},
                    {"budget": budget.name}, DEFAULT_TTL_SECONDS,
                    _key(budget, "cancel", f"{source}/{task_id}")))
                    for source, task_id in new_tasks)
        return queued

    def _pause_or_resume(self, budget: Budget, spent: bool, now: float) -> int:
        last = self._last_pause_or_resume(budget)
        paused = last is not None and last.kind == "fleet.pause"
        if spent and not paused:
            # One pause per crossing: the key names the budget command before it (none, or the
            # resume that ended the last pause), so checking again finds the same key.
            return self._issue(budget, CommandRequest(
                "fleet.pause", dict(budget.scope), {"budget": budget.name},
                DEFAULT_TTL_SECONDS, _key(budget, "pause", last.id if last else "first")))
        if not spent and paused:
            return self.release(budget)
        return 0

    def release(self, budget: Budget) -> int:
        """Resume the budget's scope if it paused it: when it is spent no more, changed or
        deleted. 1 when a resume was queued."""
        last = self._last_pause_or_resume(budget)
        if last is None or last.kind != "fleet.pause":
            return 0
        return self._issue(budget, CommandRequest(
            "fleet.resume", last.target, {"budget": budget.name}, DEFAULT_TTL_SECONDS,
            _key(budget, "resume", last.id)))

    def _last_pause_or_resume(self, budget: Budget) -> Command | None:
        return self.queue.last_issued(f"budget:{budget.name}", ("fleet.pause", "fleet.resume"))

    def _tasks_in_scope(self, budget: Budget, since: float) -> list[tuple[str, str]]:
        """Open tasks of the budget's task type submitted since it was spent (lock held)."""
        scope = dict(budget.scope)
        if "task_type" not in scope:
            return []
        return [(task.source, task.task_id) for task in self.state.tasks.values()
                if task.task_type == scope["task_type"] and task.submitted_at is not None
                and task.submitted_at >= since]

    def _issue(self, budget: Budget, request: CommandRequest) -> int:
        command, created = self.queue.create(request, issued_by=f"budget:{budget.name}")
        if created:
            self.audit.record(Actor(f"budget:{budget.name}"), f"command.{command.kind}",
                              command.target, "queued", {"command": command.id,
                                                         "budget": budget.name})
        return int(created)


def _key(budget: Budget, action: str, subject: str) -> str:
    """An idempotency key of the budget's: within the 128 characters a key may have."""
    key = f"budget:{budget.name}:{action}:{subject}"
    if len(key) <= 128:
        return key
    return f"budget:{budget.name}:{action}:" + hashlib.blake2b(subject.encode(),
                                                               digest_size=16).hexdigest()
