"""The receivers under fuzzing: any field of a real shape replaced by any JSON value gives either
canonical events the fleet state applies, or problems naming the event: never an exception."""

from __future__ import annotations

import copy
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_sources import dashboard_stream, monitor_stream, orchestr8_stream

from exporter.events import validate_batch
from exporter.pricing import load_price_table
from exporter.state import FleetState

SAMPLES = (monitor_stream(agents=6).events[:8] + dashboard_stream(tasks=2).events[:14]
           + orchestr8_stream(executions=5).events[:30])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)


def _paths(event: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(event, dict):
        for key, value in event.items():
            paths += _paths(value, (*prefix, key))
    return paths


def _replace(event: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(event)
    target = mutated
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return mutated


@st.composite
def mutated_batches(draw: st.DrawFn) -> list[Any]:
    batch = []
    for event in draw(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=6)):
        paths = _paths(event)
        if draw(st.booleans()) and paths:
            event = _replace(event, draw(st.sampled_from(paths)), draw(JSON))
        batch.append(event)
    return batch


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_batches())
def test_any_mutation_of_a_real_shape_is_translated_or_named_never_raised(batch):
    events, problems = validate_batch(batch, time.time())
    assert all(0 <= problem.index < len(batch) for problem in problems)
    if problems:
        return
    state = FleetState(prices=load_price_table(), budgets=(), label_value_limit=100)
    state.apply_all(events)
    state.take_changes()
