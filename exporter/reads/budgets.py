"""A budget as the read API and the budgets routes show it: the numbers the metrics have.

`spent_usd` is orchestrator_budget_spent_usd; `projected_usd` is the period-average projection of
the recording rule budget:orchestrator_budget_spent_usd:projected_period_average (the elapsed
time floored at one hour); `state` follows the alerts: exceeded at 100 %, warning at 80 %.
"""

from __future__ import annotations

from typing import Any, Final

from exporter.budgets import BudgetTracker, period_bounds
from exporter.config import Budget
from exporter.fairlock import FairLock
from exporter.pricing import NANO_PER_USD

WARNING_SHARE: Final = 0.8  # OrchestratorBudgetNearlySpent
MIN_ELAPSED: Final = 3_600.0


def budget_state(spent: float, limit: float) -> str:
    if spent >= limit:
        return "exceeded"
    return "warning" if spent >= WARNING_SHARE * limit else "ok"


def budget_report(budget: Budget, tracker: BudgetTracker, lock: FairLock, *,
                  from_config: bool, now: float) -> dict[str, Any]:
    start, end = period_bounds(budget.period, now)
    with lock:
        spent = tracker.spent_nano(budget, now) / NANO_PER_USD
    projected = spent / max(now - start, MIN_ELAPSED) * (end - start)
    return {"name": budget.name, "limit_usd": budget.limit_usd, "period": budget.period,
            "scope": dict(budget.scope), "on_exceed": budget.on_exceed,
            "source": "config" if from_config else "runtime", "spent_usd": spent,
            "projected_usd": projected, "state": budget_state(spent, budget.limit_usd),
            "period_start": start, "period_end": end}
