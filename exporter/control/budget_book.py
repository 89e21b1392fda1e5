"""The budgets in force: the config file's, and those made at runtime (kept in the ledger).

A change takes effect at once and exactly: right after a checkpoint, under the state lock, the
new set's spend is read from the ledger's daily sums (so a budget made mid-period counts the
spend of the period so far). The config file's budgets cannot be changed or deleted here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from exporter.config import Budget
from exporter.ledger import Ledger
from exporter.pipeline import IngestPipeline
from exporter.state import FleetState

# Runtime budgets at once. Each is matched against every usage event and is a label value of the
# budget metrics; past this a new one is refused (none is ever dropped to make room).
MAX_RUNTIME_BUDGETS: Final = 1_000


class TooManyBudgetsError(ValueError):
    """MAX_RUNTIME_BUDGETS are in force: delete one first."""


class ConfigBudgetError(ValueError):
    """The budget is the config file's: change it there."""


class UnknownBudgetError(KeyError):
    """No budget has this name."""


class BudgetBook:
    """Creates, replaces and deletes runtime budgets; the state's tracker follows."""

    def __init__(self, *, config_budgets: tuple[Budget, ...], ledger: Ledger,
                 pipeline: IngestPipeline, state: FleetState,
                 release: Callable[[Budget], object] = lambda budget: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config_budgets = config_budgets
        self.ledger = ledger
        self.pipeline = pipeline
        self.state = state
        # Called with a budget replaced or deleted: the enforcer resumes what it paused.
        self.release = release
        self.clock = clock
        self._runtime: dict[str, Budget] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """At start, before the state is restored: it restores these budgets' spend."""
        self._runtime = {budget.name: budget for budget in self.ledger.runtime_budgets()
                         if budget.name not in self._config_names}
        self.state.set_budgets(self.budgets, 0, {})

    @property
    def _config_names(self) -> set[str]:
        return {budget.name for budget in self.config_budgets}

    @property
    def budgets(self) -> tuple[Budget, ...]:
        return self._merged(self._runtime)

    def _merged(self, runtime: dict[str, Budget]) -> tuple[Budget, ...]:
        return (*self.config_budgets, *sorted(runtime.values(), key=lambda b: b.name))

    def from_config(self, name: str) -> bool:
        return name in self._config_names

    def get(self, name: str) -> Budget:
        for budget in self.budgets:
            if budget.name == name:
                return budget
        raise UnknownBudgetError(name)

    def put(self, budget: Budget, *, by: str) -> bool:
        """Create or replace a runtime budget; True when it is new."""
        if self.from_config(budget.name):
            raise ConfigBudgetError(f"the budget {budget.name!r} is the config file's")
        with self._lock:
            before = self._runtime.get(budget.name)
            if before is None and len(self._runtime) >= MAX_RUNTIME_BUDGETS:
                raise TooManyBudgetsError(f"{MAX_RUNTIME_BUDGETS} runtime budgets are in force; "
                                          "delete one first")
            self.ledger.save_budget(budget, by=by, at=self.clock())
            self._apply({**self._runtime, budget.name: budget})
        if before is not None:
            self.release(before)  # a pause of the old terms ends; the new ones decide again
        return before is None

    def delete(self, name: str) -> Budget:
        if self.from_config(name):
            raise ConfigBudgetError(f"the budget {name!r} is the config file's")
        with self._lock:
            budget = self._runtime.get(name)
            if budget is None:
                raise UnknownBudgetError(name)
            self.ledger.delete_budget(name)
            self._apply({key: value for key, value in self._runtime.items() if key != name})
        self.release(budget)
        return budget

    def _apply(self, runtime: dict[str, Budget]) -> None:
        """The state's tracker takes the new set; only then is it the book's (a reader never
        sees a budget the tracker does not know)."""
        budgets = self._merged(runtime)
        self.pipeline.settled(lambda: self.state.set_budgets(
            budgets, *self.ledger.budget_days(budgets, self.clock())))
        self._runtime = runtime
