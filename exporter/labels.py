"""Bounds on label values: free-form values beyond a cap are reported as `other`."""

from __future__ import annotations

from typing import Final

OTHER: Final = "other"
# Placeholders the exporter itself writes; they never use up a slot.
RESERVED: Final = frozenset({OTHER, "unknown", "none", "unspecified", "default"})
CAPPED_LABELS: Final = ("source", "role", "model", "task_type", "workflow", "step", "agent", "tool",
                        "error_type")


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
