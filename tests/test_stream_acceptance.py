"""10,000 mixed events in both dialects, 5% resent: /metrics equals the sums of the accepted events
exactly; unchanged after resending everything and after kill -9 and restart; on SQLite and on a
real PostgreSQL; and `promtool check metrics` is clean on the result."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streams import Stream, mixed_stream
from support import ExporterProcess, require_binary

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(value for (sample, label_set), value in samples.items()
               if sample == name and wanted <= label_set)


def post_all(exporter: ExporterProcess, batches: list[list[dict[str, object]]]) -> tuple[int, int]:
    accepted = duplicates = 0
    for batch in batches:
        response = exporter.post_events(batch)
        assert response.status_code == 200, response.text
        accepted += response.json()["accepted"]
        duplicates += response.json()["duplicates"]
    return accepted, duplicates


def assert_totals_match(samples: Samples, stream: Stream) -> None:
    expected = stream.expected
    for role, nano in expected.cost_nano_by_role.items():
        assert round(total(samples, "orchestrator_cost_usd_total", role=role) * 1e9) == nano, role
    for token_type, count in expected.tokens_by_type.items():
        assert total(samples, "orchestrator_tokens_total", type=token_type) == count, token_type
    for outcome, count in expected.tool_calls_by_outcome.items():
        assert total(samples, "orchestrator_tool_calls_total", outcome=outcome) == count
    for status, count in expected.tasks_by_status.items():
        assert total(samples, "orchestrator_tasks_total", status=status) == count, status
    for status, count in expected.runs_by_status.items():
        assert total(samples, "orchestrator_workflow_runs_total", status=status) == count
    for status, count in expected.steps_by_status.items():
        assert total(samples, "orchestrator_steps_total", status=status) == count, status
    for level, count in expected.logs_by_level.items():
        assert total(samples, "orchestrator_log_entries_total", level=level) == count, level
    assert total(samples, "orchestrator_unpriced_usage_events_total") == expected.unpriced_events
    assert total(samples, "orchestrator_agents_created_total") == expected.agents_created
    assert total(samples, "orchestrator_exporter_events_accepted_total") == \
        expected.unique_events


def persistent_samples(samples: Samples) -> Samples:
    """Counters, histograms and non-zero gauges of the fleet: what must survive anything."""
    kept: Samples = {}
    for (name, labels), value in samples.items():
        if not name.startswith("orchestrator_") or name.startswith("orchestrator_exporter_"):
            continue
        is_series = name.endswith(("_total", "_bucket", "_sum", "_count"))
        if is_series or value != 0:
            kept[(name, labels)] = value
    return kept


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool", "prometheus")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)


def run_acceptance(start: Callable[[], ExporterProcess]) -> None:
    stream = mixed_stream()
    exporter = start()
    accepted, duplicates = post_all(exporter, stream.batches)
    assert (accepted, duplicates) == (stream.expected.unique_events, stream.resent)
    text = exporter.metrics_text()
    first = exporter.metrics()
    assert_totals_match(first, stream)
    check = promtool_check(text)
    assert (check.returncode, check.stdout, check.stderr) == (0, "", "")

    unique = stream.all_unique
    again = post_all(exporter, [unique[i:i + 500] for i in range(0, len(unique), 500)])
    assert again == (0, len(unique))
    assert persistent_samples(exporter.metrics()) == persistent_samples(first)
    assert total(exporter.metrics(), "orchestrator_exporter_events_accepted_total") == \
        stream.expected.unique_events

    exporter.kill9()
    exporter.start()
    restored = exporter.metrics()
    assert persistent_samples(restored) == persistent_samples(first)
    assert_totals_match(restored, stream)
    # The first writes after the restart are resends: every one is known as a duplicate.
    assert post_all(exporter, [unique[i:i + 500] for i in range(0, len(unique), 500)]) == \
        (0, len(unique))
    assert persistent_samples(exporter.metrics()) == persistent_samples(first)


def test_stream_totals_are_exact_and_survive_resend_and_kill9_on_sqlite(exporter_factory):
    run_acceptance(lambda: exporter_factory())


@pytest.mark.integration
def test_stream_totals_are_exact_and_survive_resend_and_kill9_on_postgresql(
        exporter_factory, fresh_postgres_url):
    run_acceptance(lambda: exporter_factory(database_url=fresh_postgres_url))


def _fed_without_checkpoints(exporter_factory: Any, database: Path, total: int) -> tuple[
        ExporterProcess, Stream]:
    """An exporter that writes no periodic checkpoint, fed `total` unique events."""
    exporter = exporter_factory(database_url=f"sqlite:///{database}",
                                env={"EXPORTER_CHECKPOINT_SECONDS": "3600"})
    stream = mixed_stream(total=total, resend_share=0.0)
    for batch in stream.batches:
        assert exporter.post_events(batch).status_code == 200
    return exporter, stream


def _stored_and_checkpointed(database: Path) -> tuple[int, tuple[int] | None]:
    with sqlite3.connect(database) as connection:
        stored = connection.execute("SELECT max(seq) FROM events").fetchone()[0]
        row = connection.execute("SELECT applied_seq FROM checkpoint").fetchone()
    return stored, row


def test_events_acknowledged_after_the_last_checkpoint_are_replayed_after_kill9(
        exporter_factory, tmp_path):
    database = tmp_path / "replay.db"
    # No checkpoint during the test: every event must come back by replay.
    exporter, stream = _fed_without_checkpoints(exporter_factory, database, 3000)
    before = persistent_samples(exporter.metrics())
    exporter.kill9()
    # The aggregates never reached the ledger before the kill.
    assert _stored_and_checkpointed(database) == (3000, None)
    exporter.start()
    assert persistent_samples(exporter.metrics()) == before
    assert_totals_match(exporter.metrics(), stream)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_writes_a_final_checkpoint(exporter_factory, tmp_path, stop_signal):
    database = tmp_path / "stopped.db"
    exporter, _ = _fed_without_checkpoints(exporter_factory, database, 1000)
    exporter.process.stop_signal = stop_signal
    exporter.process.stop(timeout=30)
    # A graceful stop leaves nothing to replay at the next start.
    assert _stored_and_checkpointed(database) == (1000, (1000,))
    assert exporter.process.returncode == 0
