"""The event contract: both dialects fold into one canonical form; the schema matches the docs."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from exporter.events import EVENT_TYPES, TYPE_ALIASES, json_schema, validate_batch, validate_one

NOW = time.time()


def test_agentmonitor_callback_names_and_camel_case_fields_are_aliases():
    event = validate_one({"type": "agent_usage", "agentId": "a-1", "inputTokens": 10,
                          "outputTokens": 2, "cacheReadTokens": 3, "cacheCreationTokens": 4,
                          "costUsd": 0.5, "contextTokens": 900}, NOW)
    assert event.type == "agent.usage"
    assert event.fields == {"agent_id": "a-1", "input_tokens": 10, "output_tokens": 2,
                            "cache_read_tokens": 3, "cache_creation_tokens": 4, "cost_usd": 0.5,
                            "context_tokens": 900}
    assert validate_one({"type": "status_changed", "agentId": "a", "status": "idle"},
                        NOW).type == "agent.status_changed"


def test_snake_case_wins_over_camel_case():
    event = validate_one({"type": "agent.usage", "agent_id": "snake", "agentId": "camel"}, NOW)
    assert event.fields["agent_id"] == "snake"


def test_orchestr8_execution_id_is_the_run_and_workflow_id_the_name():
    started = validate_one({"type": "workflow.started", "workflowId": "release",
                            "executionId": "exec-9"}, NOW)
    assert started.fields == {"run_id": "exec-9", "workflow": "release"}
    assert started.dialect == "orchestr8"
    # The real bus names only the workflow here: the state correlates it with its open run.
    without_execution = validate_one({"type": "workflow.completed", "workflowId": "wf-1"}, NOW)
    assert without_execution.fields == {"workflow": "wf-1"}


def test_orchestr8_data_object_fields_are_read_and_top_level_wins():
    event = validate_one({"type": "step.failed", "workflowId": "w", "executionId": "e",
                          "stepId": "s1", "data": {"agentId": "a-7", "name": "build",
                                                   "errorType": "timeout", "stepId": "ignored"}},
                         NOW)
    assert event.fields == {"run_id": "e", "step_id": "s1", "step": "build", "agent_id": "a-7",
                            "error_type": "timeout"}


def test_envelope_defaults_and_timestamp_forms():
    event = validate_one({"type": "agent.deleted", "agent_id": "a"}, NOW)
    assert (event.id, event.source, event.timestamp) == (None, "default", NOW)
    rfc = validate_one({"type": "agent.deleted", "agent_id": "a", "source": "prod-1",
                        "timestamp": "2026-01-02T03:04:05.5+01:00"}, NOW)
    assert rfc.timestamp == 1767319445.5 and rfc.source == "prod-1"
    assert validate_one({"type": "agent.deleted", "agent_id": "a", "timestamp": 1767319445},
                        NOW).timestamp == 1767319445.0


def test_a_batch_reports_every_problem_and_returns_no_events_to_store():
    events, problems = validate_batch([{"type": "agent.deleted", "agent_id": "ok"},
                                       {"type": "task.failed"}, "text"], NOW)
    assert [(problem.index, problem.field) for problem in problems] == [(1, "task_id"), (2, "")]
    assert all(event.payload == b"" for event in events)


def test_valid_batches_keep_the_raw_event_as_payload():
    events, problems = validate_batch([{"type": "agent.deleted", "agentId": "a", "extra": 1}],
                                      NOW)
    assert problems == []
    assert events[0].payload == b'{"type":"agent.deleted","agentId":"a","extra":1}'


def test_integral_floats_count_as_token_counts():
    assert validate_one({"type": "agent.usage", "agent_id": "a", "input_tokens": 12.0},
                        NOW).fields["input_tokens"] == 12
    with pytest.raises(ValueError, match="input_tokens"):
        validate_one({"type": "agent.usage", "agent_id": "a", "input_tokens": float("nan")}, NOW)


def test_schema_covers_every_type_and_alias():
    schema = json_schema()
    titles = [entry["title"] for entry in schema["oneOf"]]  # type: ignore[index]
    assert titles == list(EVENT_TYPES)
    names = {name for entry in schema["oneOf"]  # type: ignore[union-attr]
             for name in entry["properties"]["type"]["enum"]}
    assert names == set(TYPE_ALIASES)


def test_docs_events_md_names_every_type_and_field():
    text = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()
    table = {}
    for line in text.splitlines():
        match = re.match(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \| (.*) \|$", line)
        if match:
            for name in re.findall(r"`([a-z_.]+)`", match[1]):
                table[name] = set(re.findall(r"`([a-z0-9_]+)\??`", match[2]))
    for event_type, specs in EVENT_TYPES.items():
        assert event_type in table, event_type
        assert {spec.name for spec in specs} == table[event_type], event_type


def test_long_source_ids_stay_distinct_through_translation():
    first, second = "x" * 124 + "aaaa", "x" * 124 + "bbbb"
    frame = {"type": "agent_update", "data": {"id": "a-1", "role": "BUILDER", "status": "idle"}}
    ids = [event.id for raw_id in (first, second)
           for event in validate_batch([{**frame, "id": raw_id}], NOW)[0]]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert all(event_id is not None and len(event_id) <= 128 for event_id in ids)
    one = {"type": "execution.started", "executionId": "e-1"}
    assert [event.id for event in validate_batch([{**one, "id": first}], NOW)[0]] == [first]
