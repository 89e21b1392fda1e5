"""Reading the Prometheus text exposition into values tests can compare."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def parse_metrics(text: str) -> dict[SampleKey, float]:
    """Every sample of an exposition, keyed by (sample name, frozenset of label pairs).

    Sample names keep their suffixes (`_total`, `_bucket`, `_count`, `_sum`), as in the text.
    """
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample with exactly these labels, or None (like get_sample_value)."""
    return parse_metrics(text).get((name, frozenset(labels.items())))
