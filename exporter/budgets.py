"""Budgets: exact spend over the current UTC calendar period, from per-day sums."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from typing import Final

from exporter.config import Budget

SECONDS_PER_DAY: Final = 86_400


def epoch_day(timestamp: float) -> int:
    return int(timestamp // SECONDS_PER_DAY)


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """Start and end (Unix seconds) of the UTC day, ISO week or month containing `now`."""
    day = epoch_day(now)
    if period == "day":
        return day * SECONDS_PER_DAY, (day + 1) * SECONDS_PER_DAY
    if period == "week":
        monday = day - (day + 3) % 7  # 1970-01-01 was a Thursday
        return monday * SECONDS_PER_DAY, (monday + 7) * SECONDS_PER_DAY
    year, month = time.gmtime(now)[:2]
    start = calendar.timegm((year, month, 1, 0, 0, 0))
    days = calendar.monthrange(year, month)[1]
    return float(start), float(start + days * SECONDS_PER_DAY)


def window_start_day(budgets: Iterable[Budget], now: float) -> int:
    """The first day any budget's current period needs."""
    starts = [period_bounds(budget.period, now)[0] for budget in budgets]
    return epoch_day(min(starts)) if starts else epoch_day(now)


class BudgetTracker:
    """Per budget, nano-dollars spent per UTC day, kept from the earliest current period on."""

    def __init__(self, budgets: tuple[Budget, ...]) -> None:
        self.budgets = budgets
        self.by_day: dict[str, dict[int, int]] = {budget.name: {} for budget in budgets}
        self.first_day = 0

    def replace(self, budgets: tuple[Budget, ...], first_day: int,
                sums: dict[str, dict[int, int]]) -> None:
        """Other budgets, with their per-day sums read from the ledger."""
        self.budgets = budgets
        self.by_day = {budget.name: {} for budget in budgets}
        self.first_day = 0
        self.restore(first_day, sums)

    def restore(self, first_day: int, sums: dict[str, dict[int, int]]) -> None:
        self.first_day = first_day
        for name, days in sums.items():
            if name in self.by_day:
                self.by_day[name] = dict(days)

    def add(self, timestamp: float, dimensions: dict[str, str], nano: int) -> None:
        day = epoch_day(timestamp)
        if day < self.first_day or not nano:
            return
        for budget in self.budgets:
            if budget.matches(dimensions):
                days = self.by_day[budget.name]
                days[day] = days.get(day, 0) + nano

    def spent_nano(self, budget: Budget, now: float) -> int:
        start, end = period_bounds(budget.period, now)
        first, last = epoch_day(start), epoch_day(end)
        days = self.by_day.get(budget.name, {})  # a budget being added: nothing counted yet
        return sum(nano for day, nano in days.items() if first <= day < last)

    def prune(self, now: float) -> None:
        """Forget days no current period needs (called as periods roll over)."""
        self.first_day = max(self.first_day, window_start_day(self.budgets, now))
        for days in self.by_day.values():
            for day in [day for day in days if day < self.first_day]:
                del days[day]
