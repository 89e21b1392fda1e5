"""Retention at a simulated clock: old events and ended entities leave the ledger, the archive
holds exactly the pruned events, every counter stays, live entities are untouched."""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from streams import mixed_stream
from support import ExporterFactory, ExporterProcess, wait_until

from exporter.budgets import SECONDS_PER_DAY
from exporter.callback import MonitorCallback
from exporter.config import parse_config
from exporter.events import validate_batch
from exporter.retention import Pruner, RetentionThread
from exporter.service import build_exporter
from exporter.settings import Settings

UNLIMITED = {"EXPORTER_API_RATE_PER_SECOND": "100000", "EXPORTER_API_BURST": "1000000"}


def fleet_totals(exporter: ExporterProcess) -> dict[Any, float]:
    return {key: value for key, value in exporter.metrics().items()
            if key[0].startswith("orchestrator_") and not key[0].startswith(
                "orchestrator_exporter_") and key[0].endswith(("_total", "_count", "_sum",
                                                                "_bucket"))}


def checkpointed(database: Path) -> int:
    """The last event the ledger's checkpoint holds (0: none written yet)."""
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT applied_seq FROM checkpoint").fetchone()
    return int(row[0]) if row else 0


def read(exporter: ExporterProcess, path: str, **params: Any) -> Any:
    with httpx.Client(timeout=60) as client:
        answer = client.get(f"{exporter.url}{path}", params=params,
                            headers={"Authorization": f"Bearer {exporter.token}"})
    assert answer.status_code == 200, answer.text
    return answer.content if "ndjson" in answer.headers["content-type"] else answer.json()


def test_prune_keeps_counters_live_entities_and_archives_exactly_what_it_removes(
        exporter_factory: ExporterFactory, tmp_path: Path):
    database = tmp_path / "ledger.db"
    exporter = exporter_factory(database_url=f"sqlite:///{database}", env=UNLIMITED)
    for batch in mixed_stream(total=3_000, batch_size=300).batches:
        assert exporter.post_events(batch).status_code == 200
    totals = fleet_totals(exporter)
    live = {agent["agent_id"] for agent in read(exporter, "/api/v1/agents", live="true",
                                                limit=1000)["items"]}
    ended_tasks = [task for task in read(exporter, "/api/v1/tasks", limit=1000)["items"]
                   if task["ended_at"] is not None]
    exported = read(exporter, "/api/v1/events/export").splitlines()
    assert live and ended_tasks and len(exported) == 3_000
    # Only events a checkpoint holds are pruned, and reads no longer write one: wait for the
    # exporter's own (every second by default). Without the wait the prune could find none.
    wait_until(lambda: checkpointed(database) == 3_000, 30,
               describe=lambda: f"checkpoint at {checkpointed(database)}")

    archive = tmp_path / "archive"
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + SECONDS_PER_DAY))
    answer = subprocess.run([sys.executable, "-m", "exporter", "prune", "--before", tomorrow,
                             "--archive-dir", str(archive), "--database-url",
                             f"sqlite:///{database}"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert answer.returncode == 0, answer.stderr
    archived = [line for path in sorted(archive.glob("events-*.ndjson.gz"))
                for line in gzip.decompress(path.read_bytes()).splitlines()]
    # Exactly the pruned events, in ledger order: all but the newest, which stays so that no
    # seq is ever handed out twice.
    assert archived == exported[:-1]
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        audit = connection.execute("SELECT action, outcome FROM audit").fetchall()
    assert ("history.prune", "done") in audit

    assert fleet_totals(exporter) == totals  # no counter moved
    assert {agent["agent_id"] for agent in read(exporter, "/api/v1/agents", limit=1000)[
        "items"]} == live  # ended agents gone, live ones kept
    remaining = read(exporter, "/api/v1/tasks", limit=1000)["items"]
    assert all(task["ended_at"] is None for task in remaining)
    assert read(exporter, "/api/v1/runs", status="completed")["items"] == []
    exporter.restart()
    assert fleet_totals(exporter) == totals
    # The archive is re-ingestible: another exporter gets the same counters from it.
    other = exporter_factory(env=UNLIMITED)
    for start in range(0, len(exported), 1_000):  # the archive, and the one event kept
        assert other.post_events(b"\n".join((archived + exported[-1:])[start:start + 1_000]),
                                 content_type="application/x-ndjson").status_code == 200
    assert fleet_totals(other) == totals


def test_the_background_thread_prunes_at_its_clock_and_expires_the_archive(tmp_path: Path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", retention_days=0)
    exporter = build_exporter(settings, registry=CollectorRegistry(), config=parse_config({}))
    exporter.start()
    try:
        callback = MonitorCallback(exporter.pipeline, strict=True)
        for index in range(50):
            callback.emit({"type": "log.entry", "level": "info", "message": f"line {index}"})
        callback.emit({"type": "agent.created", "agent_id": "live", "role": "BUILDER"})
        assert callback.flush(10)
        exporter.pipeline.synced()  # a checkpoint holds them: they may be pruned
        archive = tmp_path / "archive"
        old_file = archive / "events-2020-01-01.ndjson.gz"
        archive.mkdir()
        old_file.write_bytes(gzip.compress(b"{}\n"))
        future = time.time() + 100 * SECONDS_PER_DAY  # the simulated clock: 100 days on
        thread = RetentionThread(Pruner(exporter.ledger.engine, archive_dir=archive),
                                 days=90, archive_days=365, interval=0.05,
                                 clock=lambda: future)
        thread.start()
        deadline = time.monotonic() + 30
        while exporter.ledger.count_events() > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        thread.stop()
        assert exporter.ledger.count_events() == 1  # the newest stays
        assert not old_file.exists()  # past archive_days
        lines = [line for path in archive.glob("events-*.ndjson.gz")
                 for line in gzip.decompress(path.read_bytes()).splitlines()]
        assert len(lines) == 50
        with exporter.lock:
            assert ("default", "live") in exporter.state.live
    finally:
        exporter.close()


def test_events_resent_after_their_pruning_are_still_duplicates_on_sqlite(
        exporter_factory: ExporterFactory, tmp_path: Path):
    database = tmp_path / "ledger.db"
    exporter = exporter_factory(database_url=f"sqlite:///{database}", env=UNLIMITED)
    stream = mixed_stream(total=1_000, batch_size=250)
    for batch in stream.batches:
        assert exporter.post_events(batch).status_code == 200
    # The restart's final checkpoint holds every event, and the ids are merged into
    # event_ids, as after any long run.
    exporter.restart()
    totals = fleet_totals(exporter)
    answer = subprocess.run([sys.executable, "-m", "exporter", "prune", "--before",
                             "2999-01-01", "--database-url", f"sqlite:///{database}"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert answer.returncode == 0, answer.stderr
    for batch in stream.batches:
        response = exporter.post_events(batch)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 0
    assert fleet_totals(exporter) == totals


def test_a_pass_ends_at_the_first_events_received_after_the_cutoff(tmp_path: Path):
    # It never reads the whole ledger to find nothing: an event stored out of order behind
    # newer ones waits for the next pass, which takes it once the cutoff has passed them.
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", retention_days=0)
    exporter = build_exporter(settings, registry=CollectorRegistry(), config=parse_config({}))
    exporter.start()

    def store(prefix: str, count: int, received: float) -> None:
        raws = [{"type": "log.entry", "id": f"{prefix}{number}", "level": "info",
                 "message": prefix, "timestamp": received} for number in range(count)]
        events, problems = validate_batch(raws, received)
        assert problems == []
        exporter.pipeline.submit(events, received).result(10)

    try:
        old, new = time.time() - 3 * SECONDS_PER_DAY, time.time() - SECONDS_PER_DAY
        store("old", 25, old)
        store("new", 25, new)
        store("late", 1, old)  # received before the newer ones, stored after them
        store("newest", 1, time.time())
        exporter.pipeline.synced()
        pruner = Pruner(exporter.ledger.engine, chunk=10, pause=0)
        assert pruner.prune(old + 1).events == 25
        assert exporter.ledger.count_events() == 27
        assert pruner.prune(new + 1).events == 26  # the new ones, and the late one with them
        assert exporter.ledger.count_events() == 1
    finally:
        exporter.close()


def test_the_pruner_rests_between_chunks_in_proportion_to_their_work(tmp_path: Path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", retention_days=0)
    exporter = build_exporter(settings, registry=CollectorRegistry(), config=parse_config({}))
    exporter.start()
    try:
        received = time.time() - 3 * SECONDS_PER_DAY
        raws = [{"type": "log.entry", "id": f"e{number}", "level": "info", "message": "m",
                 "timestamp": received} for number in range(31)]
        events, problems = validate_batch(raws, received)
        assert problems == []
        exporter.pipeline.submit(events, received).result(10)
        exporter.pipeline.synced()
        # The chunks take 0.01, 1.0 and 0.5 s on this clock (a clock reading at each chunk's
        # start and before each rest; then the last, empty chunk and one each for agents,
        # tasks and runs, none of which fills a chunk): the rests are the floor, 3.0 and 1.5 s.
        times = iter([0.0, 0.01, 0.01, 1.01, 1.01, 1.51, 1.51, 2.0, 2.0, 2.0])
        rests: list[float] = []
        pruner = Pruner(exporter.ledger.engine, chunk=10, pause=0.2, rest=3.0,
                        clock=lambda: next(times), sleep=rests.append)
        assert pruner.prune(time.time() - SECONDS_PER_DAY).events == 30  # the newest stays
        assert rests == pytest.approx([0.2, 3.0, 1.5])  # none after the last chunk
    finally:
        exporter.close()


def test_pruning_removes_old_events_and_ended_entities_on_postgresql(fresh_postgres_url: str):
    settings = Settings(database_url=fresh_postgres_url, retention_days=0)
    exporter = build_exporter(settings, registry=CollectorRegistry(), config=parse_config({}))
    exporter.start()
    try:
        callback = MonitorCallback(exporter.pipeline, strict=True)
        for number in range(3):
            task, run, agent = f"t{number}", f"r{number}", f"a{number}"
            for event in ({"type": "task.submitted", "task_id": task},
                          {"type": "workflow.started", "run_id": run, "workflow": "release"},
                          {"type": "agent.created", "agent_id": agent, "role": "BUILDER"},
                          {"type": "step.started", "run_id": run, "step_id": "s0"},
                          {"type": "agent.deleted", "agent_id": agent},
                          {"type": "workflow.completed", "run_id": run},
                          {"type": "task.completed", "task_id": task}):
                callback.emit(event)
        callback.emit({"type": "agent.created", "agent_id": "live", "role": "BUILDER"})
        assert callback.flush(10)
        exporter.pipeline.synced()
        pruner = Pruner(exporter.ledger.engine, chunk=4, pause=0)
        result = pruner.prune(time.time() + SECONDS_PER_DAY)
        assert (result.events, result.agents, result.tasks, result.runs, result.steps) == (
            21, 3, 3, 3, 3)
        assert exporter.ledger.count_events() == 1  # the newest stays
        with exporter.lock:
            assert ("default", "live") in exporter.state.live
    finally:
        exporter.close()
