"""The command queue, durable in the ledger: delivered at least once, each with its id.

A delivered command that has no result after `redeliver_seconds` (the orchestrator died, or
the answer was lost) is delivered again, with the same id, until it expires: the orchestrator's
handlers de-duplicate by id. A command past its TTL is never delivered.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from exporter.control.commands import (
    OPEN_STATUSES,
    RESULTS,
    Command,
    CommandRequest,
)
from exporter.ledger import schema

REDELIVER_SECONDS: Final = 60.0
MAX_PAGE: Final = 500


class CommandConflictError(RuntimeError):
    """The command has ended already: a result cannot change it."""


class UnknownCommandError(KeyError):
    """No command has this id."""


class CommandQueue:
    """Creates, lists, delivers and ends commands; every change is one transaction."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time,
                 redeliver_seconds: float = REDELIVER_SECONDS,
                 reader: Engine | None = None) -> None:
        self.engine = engine
        # Lists and the scrape's count read here: on SQLite, without the write lock.
        self.reader = reader if reader is not None else engine
        self.clock = clock
        self.redeliver_seconds = redeliver_seconds
        self._take_lock = threading.Lock()
        # Every scrape asks for the queued count; it changes only when this queue writes (one
        # exporter process per ledger), so it is counted again only after a write transaction
        # of the queue (a poll that finds nothing to take writes nothing): between them a
        # scrape holds no connection and runs no query (which took 30 to 75 ms of its worst
        # times under ingest, docs/benchmarks.md). `_writes` counts those transactions; a count
        # is kept with the number it was read after.
        self._writes = 0
        self._writes_lock = threading.Lock()
        self._queued: tuple[int, dict[str, int]] | None = None

    def create(self, request: CommandRequest, *, issued_by: str,
               status: str = "queued", detail: Any = None) -> tuple[Command, bool]:
        """The new command, True; or the one with the same idempotency key, False."""
        if request.idempotency_key is not None:
            existing = self.by_key(request.idempotency_key)
            if existing is not None:
                return existing, False
        now = self.clock()
        command_id = uuid.uuid4().hex
        row = {"id": command_id, "kind": request.kind,
               "source": request.target.get("source", "default"),
               "target": orjson.dumps(request.target).decode(),
               "args": orjson.dumps(request.args).decode(), "status": status,
               "idempotency_key": request.idempotency_key, "issued_by": issued_by,
               "created_at": now, "expires_at": now + request.ttl_seconds,
               "delivered_at": None, "deliveries": 0,
               "finished_at": None if status in OPEN_STATUSES else now,
               "detail": None if detail is None else orjson.dumps(detail).decode()}
        try:
            with self._writing() as connection:
                connection.execute(schema.commands.insert().values(**row))
        except IntegrityError:  # the same key, at the same moment, from another request
            existing = self.by_key(request.idempotency_key or "")
            if existing is None:
                raise
            return existing, False
        return self.get(command_id), True

    def get(self, command_id: str) -> Command:
        with self.engine.connect() as connection:
            row = connection.execute(select(schema.commands).where(
                schema.commands.c.id == command_id)).first()
        if row is None:
            raise UnknownCommandError(command_id)
        return _command(row)

    def by_key(self, key: str) -> Command | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(schema.commands).where(
                schema.commands.c.idempotency_key == key)).first()
        return None if row is None else _command(row)

    def last_issued(self, issued_by: str, kinds: tuple[str, ...]) -> Command | None:
        """The newest command of these kinds that `issued_by` issued."""
        table = schema.commands
        with self.engine.connect() as connection:
            row = connection.execute(select(table).where(
                table.c.issued_by == issued_by, table.c.kind.in_(kinds))
                .order_by(table.c.seq.desc()).limit(1)).first()
        return None if row is None else _command(row)

    def list(self, *, status: str | None = None, kind: str | None = None,
             after: int = 0, limit: int = 100) -> tuple[list[Command], int | None]:
        """A page of commands, oldest first, and the cursor of the next page (None: the last)."""
        self.expire()
        table = schema.commands
        query = select(table).where(table.c.seq > after)
        if status is not None:
            query = query.where(table.c.status == status)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        limit = max(1, min(limit, MAX_PAGE))
        with self.reader.connect() as connection:
            rows = connection.execute(query.order_by(table.c.seq).limit(limit + 1)).all()
        commands = [_command(row) for row in rows[:limit]]
        return commands, (commands[-1].seq if len(rows) > limit else None)

    def take_next(self, source: str = "default") -> Command | None:
        """The oldest command for `source` due for delivery, marked delivered; None when there
        is none. Each orchestrator instance takes the commands of its own source."""
        self.expire()
        table = schema.commands
        now = self.clock()
        due = and_(or_(table.c.status == "queued",
                       and_(table.c.status == "delivered",
                            table.c.delivered_at <= now - self.redeliver_seconds)),
                   table.c.expires_at > now, table.c.source == source)
        with self._take_lock:
            while (seq := self._first(due)) is not None:
                with self._writing() as connection:
                    # `due` again: another exporter process on the same database may have
                    # taken it meanwhile (one per ledger is the rule; this keeps it harmless).
                    taken = connection.execute(update(table).where(
                        table.c.seq == seq, due).values(
                        status="delivered", delivered_at=now,
                        deliveries=table.c.deliveries + 1)).rowcount
                    if taken:
                        return _command(connection.execute(
                            select(table).where(table.c.seq == seq)).one())
            return None

    def finish(self, command_id: str, status: str, detail: Any) -> tuple[Command, bool]:
        """Record the orchestrator's result; (the command, True when this call changed it).

        The same result told again (a resend) changes nothing; another, for an ended command,
        raises CommandConflictError.
        """
        assert status in RESULTS
        command = self.get(command_id)
        if command.status == status:
            return command, False
        if command.status not in OPEN_STATUSES:
            raise CommandConflictError(f"the command is {command.status} already")
        table = schema.commands
        with self._writing() as connection:
            changed = connection.execute(update(table).where(
                table.c.id == command_id, table.c.status.in_(OPEN_STATUSES)).values(
                status=status, finished_at=self.clock(),
                detail=None if detail is None else orjson.dumps(detail).decode())).rowcount
        if not changed:
            return self.finish(command_id, status, detail)  # it ended meanwhile: judge again
        return self.get(command_id), True

    def expire(self) -> int:
        """Mark the open commands past their TTL expired; how many."""
        table = schema.commands
        now = self.clock()
        past = and_(table.c.status.in_(OPEN_STATUSES), table.c.expires_at <= now)
        if self._first(past) is None:
            return 0
        with self._writing() as connection:
            return int(connection.execute(update(table).where(past).values(
                status="expired", finished_at=now)).rowcount or 0)

    def _first(self, condition: ColumnElement[bool]) -> int | None:
        """The seq of the oldest command meeting `condition`, read without the write lock: an
        orchestrator polls every second, and most polls find nothing to take or expire, so
        they neither wait for the ingest writer's lock nor make the next scrape count again."""
        table = schema.commands
        with self.reader.connect() as connection:
            row = connection.execute(select(table.c.seq).where(condition)
                                     .order_by(table.c.seq).limit(1)).first()
        return None if row is None else int(row.seq)

    def queued_by_kind(self) -> dict[str, int]:
        """Queued commands by kind, read from the ledger after each write of this queue."""
        writes, kept = self._writes, self._queued
        if kept is not None and kept[0] == writes:
            return dict(kept[1])
        table = schema.commands
        with self.reader.connect() as connection:
            rows = connection.execute(select(table.c.kind, func.count()).where(
                table.c.status == "queued").group_by(table.c.kind)).all()
        counts = {kind: int(count) for kind, count in rows}
        # Kept under the number of writes seen before reading: a write that commits meanwhile
        # makes the next call read again.
        self._queued = (writes, counts)
        return dict(counts)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction; once it has ended (committed or not), counts are read anew."""
        try:
            with self.engine.begin() as connection:
                yield connection
        finally:
            with self._writes_lock:
                self._writes += 1


def _command(row: Any) -> Command:
    values = dict(row._mapping)
    values["target"] = orjson.loads(values["target"])
    values["args"] = orjson.loads(values["args"])
    values["detail"] = None if values["detail"] is None else orjson.loads(values["detail"])
    return Command(**values)
