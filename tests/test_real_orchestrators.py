"""The real orchestrators' own shapes, forwarded unchanged as NDJSON batches of 25: exact totals
on /metrics, unchanged after resending everything and after kill -9 and restart, on SQLite and
PostgreSQL; ignored and uncorrelated events counted; nothing real refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from real_sources import (
    SourceStream,
    dashboard_stream,
    mixed_stream,
    monitor_stream,
    orchestr8_stream,
)
from support import ExporterProcess
from support.exporter import NDJSON
from test_stream_acceptance import Samples, persistent_samples, promtool_check, total

BATCH = 25


def post_ndjson(exporter: ExporterProcess, events: list[dict[str, Any]]) -> int:
    """Every batch accepted (200); how many canonical events were new."""
    accepted = 0
    for start in range(0, len(events), BATCH):
        response = exporter.post_events(events[start:start + BATCH], content_type=NDJSON)
        assert response.status_code == 200, response.text
        accepted += response.json()["accepted"]
    return accepted


def assert_exact(samples: Samples, stream: SourceStream, *, first_send: bool = True) -> None:
    expected = stream.expected
    for role, nano in expected.cost_nano_by_role.items():
        assert round(total(samples, "orchestrator_cost_usd_total", role=role) * 1e9) == nano, role
    for token_type in ("input", "output", "cache_read", "cache_creation"):
        assert total(samples, "orchestrator_tokens_total", type=token_type) == \
            expected.tokens_by_type[token_type], token_type
    for role in ("ANALYST", "PLANNER", "BUILDER", "TESTER", "REVIEWER"):
        assert total(samples, "orchestrator_agents_created_total", role=role) == \
            expected.agents_by_role[role], role
    assert not any(name == "orchestrator_agents_created_total" and ("role", role) in labels
                   for (name, labels) in samples for role in ("analyst", "builder"))
    assert total(samples, "orchestrator_tasks_submitted_total") == expected.tasks_submitted
    for status in ("completed", "failed", "cancelled"):
        assert total(samples, "orchestrator_tasks_total", status=status) == \
            expected.tasks_by_status[status], status
        assert total(samples, "orchestrator_workflow_runs_total", status=status) == \
            expected.runs_by_status[status], status
    assert total(samples, "orchestrator_workflow_runs_started_total") == expected.runs_started
    for status in ("completed", "failed", "skipped", "cancelled"):
        assert total(samples, "orchestrator_steps_total", status=status) == \
            expected.steps_by_status[status], status
    for error_type, count in expected.step_errors.items():
        assert total(samples, "orchestrator_errors_total", origin="step",
                     error_type=error_type) == count
    assert total(samples, "orchestrator_log_entries_total", level="error") == expected.error_logs
    if not first_send:
        # A bare bus event has no id and no time: its resend is a new event to the exporter.
        # Fleet metrics do not move (a run or step ends once); these two counters may.
        return
    for (dialect, event_type), count in expected.ignored.items():
        assert total(samples, "orchestrator_exporter_events_ignored_total", dialect=dialect,
                     type=event_type) == count
    assert total(samples, "orchestrator_exporter_events_uncorrelated_total") == 0


def run_source(start: Callable[[], ExporterProcess], stream: SourceStream) -> None:
    exporter = start()
    assert post_ndjson(exporter, stream.events) > 0
    first = exporter.metrics()
    assert_exact(first, stream)
    check = promtool_check(exporter.metrics_text())
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")

    post_ndjson(exporter, stream.events)  # a forwarder's retry of everything
    assert persistent_samples(exporter.metrics()) == persistent_samples(first)

    exporter.kill9()
    exporter.start()
    restored = exporter.metrics()
    assert persistent_samples(restored) == persistent_samples(first)
    assert_exact(restored, stream, first_send=False)
    post_ndjson(exporter, stream.events)
    assert persistent_samples(exporter.metrics()) == persistent_samples(first)


@pytest.mark.parametrize("build", [monitor_stream, dashboard_stream, orchestr8_stream,
                                   mixed_stream], ids=lambda build: build.__name__)
def test_each_real_source_gives_exact_totals_through_resend_and_kill9(exporter_factory, build):
    run_source(lambda: exporter_factory(), build())


@pytest.mark.integration
def test_mixed_real_sources_are_exact_on_postgresql(exporter_factory, fresh_postgres_url):
    run_source(lambda: exporter_factory(database_url=fresh_postgres_url), mixed_stream())


def test_ambiguous_and_unknown_events_are_stored_and_counted_never_refused(exporter_factory):
    exporter = exporter_factory()
    events = [
        # two executions of one workflow at once: their bare step and workflow ends are
        # ambiguous
        {"type": "execution.queued", "executionId": "e-1", "workflowId": "wf"},
        {"type": "execution.queued", "executionId": "e-2", "workflowId": "wf"},
        {"type": "step.started", "stepId": "build", "executionId": "e-1"},
        {"type": "step.started", "stepId": "build", "executionId": "e-2"},
        {"type": "step.completed", "stepId": "build", "output": None},
        {"type": "workflow.completed", "workflowId": "wf", "duration": 10},
        # a step nobody started
        {"type": "step.failed", "stepId": "ghost", "error": {"name": "UNKNOWN"},
         "retryable": False},
        # types of a recognised source with nothing to count
        {"type": "timeout.exceeded", "stepId": "build", "duration": 30000},
        {"type": "connection.established", "timestamp": "2025-12-01T10:00:00.000Z"},
        {"type": "task_deleted", "data": {"id": "3fccf6d8-d534-41c1-9e5e-b6c8f8858708"}},
    ]
    response = exporter.post_events(events, content_type=NDJSON)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": len(events), "duplicates": 0}
    samples = exporter.metrics()
    uncorrelated = {(dict(labels)["type"]): value for (name, labels), value in samples.items()
                    if name == "orchestrator_exporter_events_uncorrelated_total"}
    assert uncorrelated == {"step.completed": 1, "workflow.completed": 1, "step.failed": 1}
    ignored = {(dict(labels)["dialect"], dict(labels)["type"]): value
               for (name, labels), value in samples.items()
               if name == "orchestrator_exporter_events_ignored_total"}
    assert ignored == {("orchestr8", "timeout.exceeded"): 1,
                       ("orchestr8", "connection.established"): 1,
                       ("orchestrator_dashboard", "task_deleted"): 1}
    # the ambiguous ends go to the oldest candidate: e-1's step, then e-1 itself
    assert total(samples, "orchestrator_steps_total", status="completed") == 1
    assert total(samples, "orchestrator_workflow_runs_total", status="completed") == 1
    assert total(samples, "orchestrator_workflow_runs_started_total") == 2
    assert total(samples, "orchestrator_workflow_runs_active") == 1


def test_a_broken_event_of_a_known_shape_still_gets_the_structured_422(exporter_factory):
    exporter = exporter_factory()
    response = exporter.post_events([
        {"type": "agent_update", "data": {"id": "a-1", "role": "BUILDER", "status": "active",
                                          "total_cost": "twelve dollars"}},
        {"type": "execution.queued", "executionId": "e-1", "workflowId": "wf"},
        {"type": "task_update", "data": {"id": "t-1", "status": "exploded"}},
    ], content_type=NDJSON)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_events"
    assert [(item["index"], item["field"]) for item in body["details"]] == [
        (0, "data.total_cost"), (2, "data.status")]
    assert exporter.sample("orchestrator_workflow_runs_started_total", source="default",
                           workflow="wf") is None


def test_a_total_after_the_agent_was_deleted_counts_once_and_survives_kill9(exporter_factory):
    exporter = exporter_factory()
    deleted = {"timestamp": "2025-11-09T23:44:52.118904+00:00", "type": "agent_deleted",
               "data": {"agent_id": "a-1", "metrics": {
                   "input_tokens": 100, "output_tokens": 1000, "cache_read_input_tokens": 5000,
                   "cache_creation_input_tokens": 0, "total_cost": 0.02}}}
    final_row = {"type": "agent_update", "data": {
        "id": "a-1", "role": "BUILDER", "status": "completed", "task_id": None,
        "updated_at": "2025-11-09T23:45:00.000001", "total_input_tokens": 100,
        "total_output_tokens": 1000, "cache_read_tokens": 5000, "cache_creation_tokens": 0,
        "total_cost": "$0.0153"}}
    created = {"timestamp": "2025-11-09T23:41:07.512233+00:00", "type": "agent_created",
               "data": {"agent_id": "a-1", "name": "Builder Agent", "role": "builder"}}
    assert exporter.post_events([created, deleted], content_type=NDJSON).status_code == 200
    exporter.kill9()
    exporter.start()
    # the dashboard's last frame, late, through a sender that gave it an id of its own
    assert exporter.post_events([{**final_row, "id": "late-1"}],
                                content_type=NDJSON).status_code == 200
    samples = exporter.metrics()
    assert total(samples, "orchestrator_tokens_total") == 6100
    assert round(total(samples, "orchestrator_cost_usd_total") * 1e9) == 20_000_000
    assert total(samples, "orchestrator_agents_created_total") == 1
    assert total(samples, "orchestrator_agents") == 0  # deleted, and not brought back


def test_long_error_text_and_unknown_types_of_a_known_form_are_kept(exporter_factory):
    exporter = exporter_factory()
    traceback = "Traceback (most recent call last):\n" + "  frame\n" * 4000
    events = [
        {"type": "task_update", "data": {"id": "t-1", "status": "failed", "task_type": "bug_fix",
                                         "error": traceback, "workflow": ["BUILDER"]}},
        {"type": "step.retrying", "stepId": "build", "executionId": "e-9"},
        {"type": "agent_paused", "dialect": "orchestrator_monitor",
         "data": {"agent_id": "a-1"}},
    ]
    response = exporter.post_events(events, content_type=NDJSON)
    assert response.status_code == 200, response.text
    samples = exporter.metrics()
    assert total(samples, "orchestrator_tasks_total", status="failed") == 1
    ignored = {dict(labels)["type"]: value for (name, labels), value in samples.items()
               if name == "orchestrator_exporter_events_ignored_total"}
    assert ignored == {"step.retrying": 1, "agent_paused": 1}
    assert total(samples, "orchestrator_log_entries_total") == 0
