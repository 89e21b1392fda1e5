"""Delivery latency of the live stream: from the 200 answer of the ingest request that carried an
event (bench/pacer.py) to its arrival at each subscriber (bench/subscribers.py).

The pacer knows when each batch was answered and which event ids it held; the reference
subscriber ties each id to its seq; every subscriber noted, per read, the time and the last seq
it had whole. The events of one batch share one answer time and mostly sit in a run of
consecutive seqs, so the latencies are counted as (latency, number of events) pairs: a hundred
subscribers of a million events each need not be a hundred million numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# (first seq, last seq, when the request carrying them was answered)
Run = tuple[int, int, float]


def acknowledged_runs(acks: Sequence[tuple[float, Sequence[str]]],
                      pairs: Sequence[tuple[int, str]]) -> list[Run]:
    """Runs of consecutive seqs answered at one time, for the events that `acks` names."""
    answered = {event_id: when for when, ids in acks for event_id in ids}
    runs: list[Run] = []
    for seq, event_id in sorted(pairs):
        when = answered.get(event_id)
        if when is None:
            continue
        if runs and runs[-1][1] == seq - 1 and runs[-1][2] == when:
            runs[-1] = (runs[-1][0], seq, when)
        else:
            runs.append((seq, seq, when))
    return runs


def subscriber_latencies(runs: Sequence[Run], notes: Sequence[Sequence[float]],
                         start: int) -> list[tuple[float, int]]:
    """(seconds from answer to arrival, events) for one subscriber whose notes begin after seq
    `start`: a note (time, seq) says every event after the note before, up to seq, had come."""
    latencies: list[tuple[float, int]] = []
    previous, first_run = start, 0
    for arrived, seq_value in notes:
        seq = int(seq_value)
        while first_run < len(runs) and runs[first_run][1] <= previous:
            first_run += 1
        index = first_run
        while index < len(runs) and runs[index][0] <= seq:
            first, last, when = runs[index]
            count = min(last, seq) - max(first, previous + 1) + 1
            if count > 0:
                latencies.append((arrived - when, count))
            index += 1
        previous = seq
    return latencies


def weighted_percentiles(latencies: list[tuple[float, int]]) -> dict[str, float]:
    """p50, p95, p99 and max in milliseconds, each latency counted as often as its weight."""
    ordered = sorted(latencies)
    total = sum(count for _, count in ordered)
    result: dict[str, float] = {}
    for name, fraction in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        rank, seen = max(1, round(fraction * total)), 0
        value = float("nan")
        for latency, count in ordered:
            seen += count
            if seen >= rank:
                value = latency * 1000
                break
        result[name] = value
    result["max_ms"] = ordered[-1][0] * 1000 if ordered else float("nan")
    return result


def delivery(acks: Sequence[tuple[float, Sequence[str]]], notes: dict[str, Any]) -> dict[str, Any]:
    """Latency percentiles over every subscriber and every acknowledged event, and how many
    deliveries are missing (an event some subscriber never received)."""
    runs = acknowledged_runs(acks, notes["pairs"])
    acknowledged = sum(len(ids) for _, ids in acks)
    matched = sum(last - first + 1 for first, last, _ in runs)
    latencies: list[tuple[float, int]] = []
    for subscriber in notes["subscribers"]:
        latencies += subscriber_latencies(runs, subscriber["notes"], subscriber["from"])
    delivered = sum(count for _, count in latencies)
    early = sum(count for latency, count in latencies if latency < 0)
    return {"events": acknowledged, "events_seen_by_reference": matched,
            "subscribers": len(notes["subscribers"]), "deliveries": delivered,
            "missing": acknowledged * len(notes["subscribers"]) - delivered,
            "before_answer": early, **weighted_percentiles(latencies)}
