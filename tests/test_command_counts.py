"""The queued-commands count a scrape shows: read from the ledger once per change of the queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from exporter.control.commands import CommandRequest
from exporter.control.queue import CommandQueue
from exporter.ledger import schema
from exporter.ledger.engine import make_engine, make_read_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CommandQueue]:
    url = f"sqlite:///{tmp_path / 'l.db'}" if request.param == "sqlite" \
        else request.getfixturevalue("fresh_postgres_url")
    engine = make_engine(url)
    schema.metadata.create_all(engine)
    reader = make_read_engine(url, engine)
    yield CommandQueue(engine, reader=reader, clock=lambda: 1000.0)
    reader.dispose()
    engine.dispose()


def reads(queue: CommandQueue) -> list[str]:
    """Queries run on the queue's reading engine from now on."""
    statements: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("SELECT"):
            statements.append(statement)

    event.listen(queue.reader, "before_cursor_execute", seen)
    return statements


def cancel(task_id: str, ttl: float = 300.0) -> CommandRequest:
    return CommandRequest(kind="task.cancel", target={"task_id": task_id}, args={},
                          ttl_seconds=ttl, idempotency_key=None)


def test_the_count_follows_every_change_and_is_read_once_per_change(queue: CommandQueue) -> None:
    statements = reads(queue)
    assert queue.queued_by_kind() == {}
    assert queue.queued_by_kind() == {}
    assert len(statements) == 1  # the second scrape ran no query
    queue.create(cancel("t-1"), issued_by="op")
    queue.create(cancel("t-2"), issued_by="op")
    assert queue.queued_by_kind() == {"task.cancel": 2}
    taken = queue.take_next()
    assert taken is not None
    assert queue.queued_by_kind() == {"task.cancel": 1}
    queue.finish(taken.id, "succeeded", None)
    queue.create(cancel("t-3", ttl=-1), issued_by="op")  # queued, and past its TTL
    assert queue.queued_by_kind() == {"task.cancel": 2}
    assert queue.expire() == 1
    assert queue.queued_by_kind() == {"task.cancel": 1}
    read = len(statements)
    assert queue.queued_by_kind() == {"task.cancel": 1}
    assert len(statements) == read
    # What a caller does with its answer does not change the next one.
    queue.queued_by_kind()["task.cancel"] = 99
    assert queue.queued_by_kind() == {"task.cancel": 1}


def test_a_write_that_fails_still_makes_the_count_read_again(queue: CommandQueue) -> None:
    assert queue.queued_by_kind() == {}
    statements = reads(queue)
    with pytest.raises(RuntimeError), queue._writing():
        raise RuntimeError("after the statement, before the commit")
    assert queue.queued_by_kind() == {}
    assert len(statements) == 1


def test_polls_that_find_nothing_write_nothing_and_keep_the_count(queue: CommandQueue) -> None:
    queue.create(cancel("t-1"), issued_by="op")
    queue.create(cancel("t-2"), issued_by="op", status="rejected")  # ended: never due
    assert queue.queued_by_kind() == {"task.cancel": 1}
    writes, statements = queue._writes, reads(queue)
    changes: list[str] = []
    event.listen(queue.engine, "before_cursor_execute",
                 lambda _c, _k, statement, *_rest: changes.append(statement)
                 if not statement.startswith("SELECT") else None)
    for _ in range(5):  # an orchestrator of another source polling every second
        assert queue.take_next("other") is None
        assert queue.expire() == 0
    # Not one write transaction (on SQLite each would wait for the ingest writer's lock).
    assert queue._writes == writes and changes == []
    assert queue.queued_by_kind() == {"task.cancel": 1}
    assert not [statement for statement in statements if "count(" in statement]
    taken = queue.take_next()  # the one due is still taken, in one write
    assert taken is not None and taken.status == "delivered"
    assert queue._writes == writes + 1
    assert queue.queued_by_kind() == {}
