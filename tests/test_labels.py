"""Label limits: `LabelSets` remembers combinations without changing what the limiter counts."""

from __future__ import annotations

from exporter.labels import OTHER, LabelLimiter, LabelSets


def _sets(limit: int) -> tuple[LabelLimiter, LabelSets[tuple[str, ...]], list[tuple[str, ...]]]:
    limiter = LabelLimiter(limit)
    derived: list[tuple[str, ...]] = []

    def derive(labels: tuple[str, ...]) -> tuple[str, ...]:
        derived.append(labels)
        return (*labels, "derived")

    return limiter, LabelSets(limiter, ("source", "tool"), derive), derived


def test_a_combination_seen_before_is_derived_once():
    limiter, sets, derived = _sets(limit=5)
    first = sets.get(("orch", "grep"))
    assert first == ("orch", "grep", "derived")
    assert sets.get(("orch", "grep")) is first
    assert derived == [("orch", "grep")]
    assert limiter.known["tool"] == {"grep"} and limiter.take_added() == [
        ("source", "orch"), ("tool", "grep")]


def test_an_overflowed_combination_is_counted_every_time():
    limiter, sets, derived = _sets(limit=1)
    assert sets.get(("orch", "grep")) == ("orch", "grep", "derived")
    for _ in range(3):
        assert sets.get(("orch", "bash")) == ("orch", OTHER, "derived")
    assert limiter.overflow["tool"] == 3
    assert derived == [("orch", "grep")] + [("orch", OTHER)] * 3
    # Reserved values never use a slot, and a combination of them is remembered.
    assert sets.get(("default", "unknown")) is sets.get(("default", "unknown"))
    assert limiter.overflow["source"] == 0
