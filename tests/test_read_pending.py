"""Read your writes without writing (exporter/reads/pending.py): on SQLite a read lays the
state's unwritten changes over the stored rows. Every answer must equal the answer read after a
checkpoint, no read may write one, and a day's cost must count a checkpoint being written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from streams import mixed_stream

from exporter.budgets import epoch_day
from exporter.events import validate_batch
from exporter.ledger import schema
from exporter.reads.costs import DAILY_ATTEMPTS, GROUPS, CostReads, DayRange
from exporter.reads.fleet import (
    AGENT_SORTS,
    RUN_SORTS,
    TASK_SORTS,
    AgentFilter,
    FleetReads,
    Reading,
    RunFilter,
    TaskFilter,
)
from exporter.reads.pages import Sort
from exporter.reads.pending import Pending
from exporter.service import Exporter, build_exporter
from exporter.settings import Settings

NANO = 1_000_000_000


@pytest.fixture
def exporter(tmp_path) -> Iterator[Exporter]:
    # No checkpoint of its own while a test runs: the tests decide when one is written.
    built = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}",
                                    checkpoint_seconds=3600), registry=CollectorRegistry())
    built.start()
    yield built
    built.close()


def ingest(exporter: Exporter, batches: list[list[dict[str, Any]]]) -> None:
    for batch in batches:
        events, problems = validate_batch(batch, time.time())
        assert not problems
        exporter.pipeline.submit(events, time.time()).result(timeout=30)


def stored_seq(exporter: Exporter) -> int:
    with exporter.ledger.engine.connect() as connection:
        return int(connection.execute(select(schema.checkpoint.c.applied_seq)).scalar() or 0)


def every_page(read: Callable[[str | None], Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = read(cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def day_ranges() -> list[DayRange]:
    """Ranges around today: all of it, none of it, each side, open and closed."""
    today = epoch_day(time.time())
    return [DayRange(), DayRange(end=today), DayRange(first=today),
            DayRange(first=today - 1, end=today + 1), DayRange(first=today + 1)]


def answers(fleet: FleetReads, costs: CostReads) -> dict[str, Any]:
    """Every read the API makes: each list by every sort both ways in pages of 37, filters,
    each entity's detail, costs by every group, per completed task, the summary."""
    found: dict[str, Any] = {}
    for name in AGENT_SORTS:
        for text in (name, f"-{name}"):
            found[f"agents {text}"] = every_page(lambda cursor, text=text: fleet.agents(
                AgentFilter(), Sort.parse(text, AGENT_SORTS), cursor, 37))
    for where in (AgentFilter(role="BUILDER"), AgentFilter(live=True), AgentFilter(live=False)):
        found[f"agents {where}"] = every_page(lambda cursor, where=where: fleet.agents(
            where, Sort.parse("-cost", AGENT_SORTS), cursor, 37))
    for name in TASK_SORTS:
        for text in (name, f"-{name}"):
            found[f"tasks {text}"] = every_page(lambda cursor, text=text: fleet.tasks(
                TaskFilter(), Sort.parse(text, TASK_SORTS), cursor, 37))
    for name in RUN_SORTS:
        for text in (name, f"-{name}"):
            found[f"runs {text}"] = every_page(lambda cursor, text=text: fleet.runs(
                RunFilter(), Sort.parse(text, RUN_SORTS), cursor, 37))
    found["agent details"] = [fleet.agent(item["agent_id"], item["source"])
                              for item in found["agents created"]]
    found["task details"] = [fleet.task(item["task_id"], item["source"])
                             for item in found["tasks submitted"]]
    found["run details"] = [fleet.run(item["run_id"], item["source"])
                            for item in found["runs started"]]
    for group in GROUPS:
        found[f"costs {group}"] = costs.costs(group, DayRange())
    for days in day_ranges():
        found[f"per task {days}"] = costs.per_completed_task(days)
    found["summary"] = costs.summary(time.time())
    return found


def test_reads_see_pending_changes_without_writing_a_checkpoint(exporter: Exporter):
    stream = mixed_stream(total=3_000, batch_size=250)
    half = len(stream.batches) // 2
    ingest(exporter, stream.batches[:half])
    exporter.pipeline.synced()
    ingest(exporter, stream.batches[half:])
    pending = exporter.pipeline.pending()
    assert pending.rows["agents"] and pending.rows["tasks"] and pending.daily
    before = stored_seq(exporter)
    assert before < exporter.pipeline.applied_seq

    reader = exporter.ledger.reader
    live = Reading(pending=exporter.pipeline.pending)
    laid_over = answers(FleetReads(reader, live), CostReads(reader, live))
    assert stored_seq(exporter) == before  # not one read wrote a checkpoint

    exporter.pipeline.synced()
    assert stored_seq(exporter) == exporter.pipeline.applied_seq
    written = answers(FleetReads(reader, Reading()), CostReads(reader, Reading()))
    assert laid_over == written
    # As JSON too: a timestamp must not come back 5 from the state and 5.0 from the ledger.
    assert orjson.dumps(laid_over) == orjson.dumps(written)
    # And both are the stream's own totals, not merely equal to each other.
    by_role = {item["role"]: round(item["cost_usd"] * NANO) for item in laid_over["costs role"]}
    assert by_role == {role: nano for role, nano in stream.expected.cost_nano_by_role.items()
                       if nano}
    assert len(laid_over["agents created"]) == stream.expected.agents_created
    assert len({(item["source"], item["agent_id"])
                for item in laid_over["agents -cost"]}) == stream.expected.agents_created


def test_completed_tasks_replaced_by_pending_rows_are_counted_as_they_are_now(
        exporter: Exporter):
    """Per completed task subtracts the stored rows a pending row replaces and adds its own:
    pending rows that change a completed task's cost, end or reopen it (a late event after a
    restart), complete a running one, or are new, against the same rows written."""
    stream = mixed_stream(total=2_000, batch_size=250)
    ingest(exporter, stream.batches)
    exporter.pipeline.synced()
    engine = exporter.ledger.engine
    with engine.connect() as connection:
        rows = [row._asdict() for row in connection.execute(
            select(schema.tasks).order_by(schema.tasks.c.task_id)).all()]
    completed = [row for row in rows if row["status"] == "completed"]
    others = [row for row in rows if row["status"] != "completed"]
    assert len(completed) >= 4 and others
    now = time.time()
    changed = [
        {**completed[0], "cost_nano": completed[0]["cost_nano"] + 2_500_000_000},
        {**completed[1], "analyst": not completed[1]["analyst"], "has_analyst_agent": False},
        {**completed[2], "status": "running", "ended_at": None},
        {**completed[3], "ended_at": now - 86_400},
        {**others[0], "status": "completed", "ended_at": now, "cost_nano": 7},
        {**completed[0], "task_id": "late", "ended_at": None},
    ]
    pending = Pending(rows={"tasks": [tuple(row.values()) for row in changed]})
    reader = exporter.ledger.reader
    live = CostReads(reader, Reading(pending=lambda: pending))
    laid_over = {str(days): live.per_completed_task(days) for days in day_ranges()}
    stored = CostReads(reader, Reading())
    before = {str(days): stored.per_completed_task(days) for days in day_ranges()}
    with engine.begin() as connection:
        for row in changed:
            connection.execute(schema.tasks.delete().where(
                schema.tasks.c.source == row["source"], schema.tasks.c.task_id == row["task_id"]))
        connection.execute(schema.tasks.insert(), changed)
    written = {str(days): stored.per_completed_task(days) for days in day_ranges()}
    assert laid_over == written
    assert written != before
    everything = str(DayRange())
    assert written[everything]["included"]["tasks"] + written[everything]["excluded"][
        "tasks"] == len(completed) - 1 + 2  # one reopened; one completed, one new


def role_costs(costs: CostReads) -> dict[str, int]:
    return {item["role"]: round(item["cost_usd"] * NANO)
            for item in costs.costs("role", DayRange())}


def test_a_day_s_cost_counts_a_checkpoint_being_written_once(exporter: Exporter):
    stream = mixed_stream(total=2_000, batch_size=250)
    expected = {role: nano for role, nano in stream.expected.cost_nano_by_role.items() if nano}
    pipeline, reader = exporter.pipeline, exporter.ledger.reader
    half = len(stream.batches) // 2
    ingest(exporter, stream.batches[:half])
    with pipeline._checkpointing:
        with pipeline.lock:
            writing = pipeline._prepare_checkpoint()  # taken from the state, not written yet
        ingest(exporter, stream.batches[half:])
        live = CostReads(reader, Reading(pending=pipeline.pending))
        assert role_costs(live) == expected  # the checkpoint's sums come from the copy

        copies: list[Pending] = []

        def copy_then_write() -> Pending:
            """The checkpoint is written after the copy and before the read's snapshot."""
            copies.append(pipeline.pending())
            if len(copies) == 1:
                pipeline._write_checkpoint(writing)
            return copies[-1]

        racing = CostReads(reader, Reading(pending=copy_then_write))
        assert role_costs(racing) == expected  # now in the snapshot: not added again
        assert len(copies) == 1

    copies.clear()

    def copy_then_checkpoint() -> Pending:
        """A checkpoint taken after the copy is written before the snapshot: the copy's day
        sums would count twice, so the read takes another copy."""
        copies.append(pipeline.pending())
        if len(copies) == 1:
            ingest(exporter, [[{"type": "log.entry", "level": "info", "message": "tick",
                                "timestamp": time.time()}]])
            pipeline.synced()
        return copies[-1]

    retried = CostReads(reader, Reading(pending=copy_then_checkpoint))
    assert role_costs(retried) == expected
    assert len(copies) == 2


def test_a_whole_number_time_reads_back_as_the_ledger_gives_it(exporter: Exporter):
    """A time sent as an integer is a REAL in the ledger: the pending row must say 5.0 too."""
    ingest(exporter, [[{"type": "agent.created", "agent_id": "whole", "role": "BUILDER",
                        "timestamp": int(time.time())}]])
    reader = exporter.ledger.reader
    live = FleetReads(reader, Reading(pending=exporter.pipeline.pending))
    assert exporter.pipeline.pending().rows["agents"]
    pending_item = live.agent("whole", None)
    exporter.pipeline.synced()
    written_item = FleetReads(reader, Reading()).agent("whole", None)
    assert pending_item is not None and written_item is not None
    assert orjson.dumps(pending_item) == orjson.dumps(written_item)
    assert isinstance(pending_item["created_at"], float)


def test_a_read_overtaken_by_checkpoints_each_time_writes_one_itself(exporter: Exporter):
    stream = mixed_stream(total=1_500, batch_size=250)
    expected = {role: nano for role, nano in stream.expected.cost_nano_by_role.items() if nano}
    pipeline = exporter.pipeline
    groups = [stream.batches[index::DAILY_ATTEMPTS + 1] for index in range(DAILY_ATTEMPTS + 1)]
    copies: list[Pending] = []

    def overtaken() -> Pending:
        """Every copy is overtaken by a checkpoint before the read's snapshot; after the last,
        events come that no checkpoint holds, which the read must still see."""
        ingest(exporter, groups[len(copies)])
        copies.append(pipeline.pending())
        pipeline.synced()
        if len(copies) == DAILY_ATTEMPTS:
            ingest(exporter, groups[-1])
        return copies[-1]

    costs = CostReads(exporter.ledger.reader, Reading(synced=pipeline.synced,
                                                      pending=overtaken))
    assert role_costs(costs) == expected
    assert len(copies) == DAILY_ATTEMPTS
