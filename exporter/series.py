"""Counter and histogram families: label tuples to values, with their text rendering cached.

Values are integers where the domain allows (tokens, nano-dollars, counts), so they stay exact.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

LABEL_SEPARATOR: Final = "\x1f"


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{escape_label_value(value)}"'
                     for name, value in zip(names, values, strict=True))
    return "{" + pairs + "}"


class CounterFamily:
    """A counter family; `scale` divides the stored integer on exposition (nano-dollars)."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...],
                 scale: int = 1) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self.scale = scale
        self.values: dict[tuple[str, ...], int] = {}
        self.dirty: set[tuple[str, ...]] = set()

    def inc(self, labels: tuple[str, ...], amount: int = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount
        self.dirty.add(labels)

    def touch(self, labels: tuple[str, ...]) -> None:
        """Expose the series at 0 before its first increase, so `rate()` sees that increase."""
        if labels not in self.values:
            self.values[labels] = 0
            self.dirty.add(labels)

    def key(self, labels: tuple[str, ...]) -> str:
        return self.name + LABEL_SEPARATOR + LABEL_SEPARATOR.join(labels)


class Histogram:
    """Per-bucket (not cumulative) counts, their sum and count."""

    __slots__ = ("buckets", "count", "sum")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.sum = 0.0
        self.count = 0


class HistogramFamily:
    """A histogram family with fixed upper bounds (the +Inf bucket is implied)."""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...],
                 bounds: tuple[float, ...]) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self.bounds = bounds
        self.values: dict[tuple[str, ...], Histogram] = {}
        self.dirty: set[tuple[str, ...]] = set()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        histogram = self.values.get(labels)
        if histogram is None:
            histogram = self.values[labels] = Histogram(len(self.bounds) + 1)
        histogram.buckets[bisect_left(self.bounds, value)] += 1
        histogram.sum += value
        histogram.count += 1
        self.dirty.add(labels)

    def key(self, labels: tuple[str, ...]) -> str:
        return self.name + LABEL_SEPARATOR + LABEL_SEPARATOR.join(labels)


def split_key(key: str) -> tuple[str, tuple[str, ...]]:
    name, _, rest = key.partition(LABEL_SEPARATOR)
    return name, tuple(rest.split(LABEL_SEPARATOR)) if rest else ()
