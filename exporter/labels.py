"""Bounds on label values: free-form values beyond a cap are reported as `other`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Generic, TypeVar

OTHER: Final = "other"
# Placeholders the exporter itself writes; they never use up a slot.
RESERVED: Final = frozenset({OTHER, "unknown", "none", "unspecified", "default"})
DerivedT = TypeVar("DerivedT")

# Combinations of label values a LabelSets remembers, the first seen forgotten first: the values
# are capped, but their product need not be small (five labels of 100 values each).
MAX_COMBINATIONS: Final = 100_000
CAPPED_LABELS: Final = ("source", "role", "model", "task_type", "workflow", "step", "agent", "tool",
                        "error_type", "event_type")


class LabelLimiter:
    """Keeps at most `limit` distinct values per label name, first come first kept.

    The values kept are persisted by the ledger, so the mapping survives restarts and a value
    never moves between its own series and `other`.
    """

    def __init__(self, limit: int, known: dict[str, set[str]] | None = None) -> None:
        self.limit = limit
        self.known: dict[str, set[str]] = {label: set() for label in CAPPED_LABELS}
        for label, values in (known or {}).items():
            self.known.setdefault(label, set()).update(values)
        self.overflow: dict[str, int] = dict.fromkeys(CAPPED_LABELS, 0)
        self.added: list[tuple[str, str]] = []

    def value(self, label: str, value: str) -> str:
        values = self.known[label]
        if value in values or value in RESERVED:
            return value
        if len(values) < self.limit:
            values.add(value)
            self.added.append((label, value))
            return value
        self.overflow[label] += 1
        return OTHER

    def take_added(self) -> list[tuple[str, str]]:
        added, self.added = self.added, []
        return added


class LabelSets(Generic[DerivedT]):
    """The limited label values of one kind of series, and what a caller derives from them (the
    tuples of its series, say): a combination seen before costs one dict lookup instead of a
    `LabelLimiter.value` call per label. Only combinations with no value reported as `other`
    are remembered, so every overflow is still counted; `derive` runs for every other one.
    Past `MAX_COMBINATIONS` the oldest is forgotten (derived again when seen again)."""

    def __init__(self, limiter: LabelLimiter, names: tuple[str, ...],
                 derive: Callable[[tuple[str, ...]], DerivedT]) -> None:
        self.limiter = limiter
        self.names = names
        self.derive = derive
        self._seen: dict[tuple[str, ...], DerivedT] = {}

    def get(self, raw: tuple[str, ...]) -> DerivedT:
        found = self._seen.get(raw)
        if found is None:
            labels = tuple(map(self.limiter.value, self.names, raw))
            found = self.derive(labels)
            if labels == raw:
                self._seen[raw] = found
                if len(self._seen) > MAX_COMBINATIONS:
                    del self._seen[next(iter(self._seen))]
        return found
