"""Agents, tasks and runs read back from the ledger: lists with filters, sort and cursors, and
one entity with what belongs to it.

Every read sees each event acknowledged before the request (`Reading`): on SQLite the state's
changes not yet written are laid over the stored rows, on PostgreSQL they are written first.
Amounts leave here in USD, times in Unix seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import Engine, Float, FromClause, Select, Table, and_, case, cast, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from exporter.events import TERMINAL_AGENT_STATUSES, agent_key
from exporter.ledger import schema
from exporter.pricing import NANO_PER_USD
from exporter.reads.pages import NULL_SORT_SQL, Page, ReadError, Sort, page_of
from exporter.reads.pending import Current, Pending

AGENTS: Final = schema.agents
TASKS: Final = schema.tasks
RUNS: Final = schema.workflow_runs
STEPS: Final = schema.steps
EVENTS: Final = schema.events

AGENT_SORTS: Final = ("last_activity", "created", "cost", "tokens", "context_fill")
TASK_SORTS: Final = ("submitted", "ended", "cost", "duration")
RUN_SORTS: Final = ("started", "ended", "duration")
TASK_END_STATUSES: Final = ("completed", "failed", "cancelled")
MAX_SEARCH: Final = 256
EVENT_CHUNK: Final = 1_000
# Tools whose file_path is written; any other tool naming a file read it.
WRITING_TOOLS: Final = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit"})
MAX_AGENT_FILES: Final = 10_000  # distinct paths gathered for one answer


@dataclass(frozen=True, slots=True)
class AgentFilter:
    source: str | None = None
    status: str | None = None
    role: str | None = None
    model: str | None = None
    task_id: str | None = None
    task_type: str | None = None
    workflow: str | None = None
    live: bool | None = None


@dataclass(frozen=True, slots=True)
class TaskFilter:
    source: str | None = None
    status: str | None = None
    task_type: str | None = None
    analyst: str | None = None  # included | excluded
    complexity: str | None = None
    since: float | None = None  # submitted at or after
    until: float | None = None  # submitted before
    q: str | None = None


@dataclass(frozen=True, slots=True)
class RunFilter:
    source: str | None = None
    status: str | None = None
    workflow: str | None = None
    since: float | None = None
    until: float | None = None


def usd(nano: int) -> float:
    return nano / NANO_PER_USD


def _duration(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


def _equal(column: ColumnElement[Any], value: object) -> ColumnElement[bool] | None:
    return None if value is None else column == value


def _where(query: Select[Any], *conditions: ColumnElement[bool] | None) -> Select[Any]:
    present = [condition for condition in conditions if condition is not None]
    return query.where(and_(*present)) if present else query


# -- agents ---------------------------------------------------------------------------------

def _agent_sort_key(column: Any, name: str) -> ColumnElement[Any]:
    if name == "context_fill":
        return case((column.context_limit > 0,
                     cast(column.context_tokens, Float) / cast(column.context_limit, Float)),
                    else_=NULL_SORT_SQL)
    keys: dict[str, ColumnElement[Any]] = {
        "last_activity": column.last_activity, "created": column.created_at,
        "cost": column.cost_nano, "tokens": column.tokens}
    return keys[name]


def agent_item(row: Any) -> dict[str, Any]:
    live = not row.deleted and row.status not in TERMINAL_AGENT_STATUSES
    fill = row.context_tokens / row.context_limit if row.context_limit else None
    return {
        "source": row.source, "agent_id": row.agent_id, "role": row.role, "model": row.model,
        "status": row.status, "live": live, "deleted": row.deleted, "task_id": row.task_id,
        "task_type": row.task_type, "workflow": row.workflow, "cost_usd": usd(row.cost_nano),
        "tokens": {"input": row.input_tokens, "output": row.output_tokens,
                   "cache_read": row.cache_read_tokens,
                   "cache_creation": row.cache_creation_tokens, "total": row.tokens},
        "context_tokens": row.context_tokens, "context_limit_tokens": row.context_limit,
        "context_fill": fill, "created_at": row.created_at, "last_activity": row.last_activity,
    }


def _agent_conditions(where: AgentFilter, column: Any) -> list[ColumnElement[bool] | None]:
    live: ColumnElement[bool] | None = None
    if where.live is not None:
        is_live = and_(column.deleted.is_(False),
                       column.status.not_in(sorted(TERMINAL_AGENT_STATUSES)))
        live = is_live if where.live else ~is_live
    return [_equal(column.source, where.source), _equal(column.status, where.status),
            _equal(column.role, where.role.upper() if where.role else None),
            _equal(column.model, where.model), _equal(column.task_id, where.task_id),
            _equal(column.task_type, where.task_type),
            _equal(column.workflow, where.workflow), live]


class Reading:
    """How reads see every acknowledged event: `pending` (SQLite) gives the state's changes
    not written yet, laid over the rows (exporter/reads/pending.py); without it, `synced`
    writes them first (PostgreSQL, and SQLite's rare fallback in `CostReads`). Neither: the
    rows as stored (the later pages of one streamed answer)."""

    def __init__(self, synced: Callable[[], None] | None = None,
                 pending: Callable[[], Pending] | None = None) -> None:
        self.synced = synced
        self.pending = pending

    def current(self) -> Current:
        if self.pending is not None:
            return Current(self.pending())
        if self.synced is not None:
            self.synced()
        return Current(None)


class FleetReads:
    """The read side of the ledger: agents, tasks and runs as of now (see `Reading`)."""

    def __init__(self, engine: Engine, reading: Reading) -> None:
        self.engine = engine
        self.reading = reading

    def _rows(self, query: Any) -> Sequence[Any]:
        with self.engine.connect() as connection:
            return connection.execute(query).all()

    def agents(self, where: AgentFilter, sort: Sort, cursor: str | None, limit: int) -> Page:
        def query(table: FromClause) -> tuple[Select[Any], list[ColumnElement[Any]]]:
            column = table.c
            sort_key = _agent_sort_key(column, sort.name)
            return (_where(select(*column, sort_key.label("sort_value")),
                           *_agent_conditions(where, column)),
                    [sort_key, column.source, column.agent_id])

        rows = self._rows(self.reading.current().page(AGENTS, query, sort, cursor, limit))
        return page_of(rows, limit, agent_item,
                       lambda row: (row.sort_value, row.source, row.agent_id))

    def agent(self, agent_id: str, source: str | None) -> dict[str, Any] | None:
        now = self.reading.current()
        row = self._one(now, AGENTS, source, agent_id=agent_id)
        if row is None:
            return None
        item = agent_item(row)
        item["tool_calls"] = self._tool_calls(row.source, row.agent_id)
        item["task"] = None
        if row.task_id is not None:
            task = self._one(now, TASKS, row.source, task_id=row.task_id)
            item["task"] = task_item(task) if task is not None else None
        return item

    def _one(self, now: Current, table: Table, source: str | None, **key: str) -> Any:
        """The entity, or None; with two sources naming the same id and no `source`, the
        caller must say which (ReadError)."""
        rows = now.where(table, self._rows, **key, **({} if source is None else
                                                       {"source": source}))
        if len(rows) > 1:
            raise ReadError("source", "several sources have this id; name one")
        return rows[0] if rows else None

    def _tool_calls(self, source: str, agent_id: str) -> list[dict[str, Any]]:
        counts: dict[tuple[str, str], int] = {}
        for _seq, _ts, event in self.agent_events(source, agent_id, ("agent.tool_call",)):
            key = (str(event.get("tool")), str(event.get("outcome")))
            counts[key] = counts.get(key, 0) + 1
        return [{"tool": tool, "outcome": outcome, "count": count}
                for (tool, outcome), count in sorted(counts.items())]

    def agent_events(self, source: str, agent_id: str, types: Sequence[str] | None = None,
                     after: int = 0, limit: int | None = None
                     ) -> Iterator[tuple[int, float, dict[str, Any]]]:
        """The agent's stored events in ledger order: (seq, event time, the event as stored,
        canonical JSON), from its index, a hash of (source, agent id), each hit checked against
        the payload. Events are stored before they are acknowledged: nothing to bring up to
        date."""
        key = agent_key(source, agent_id)
        yielded = 0
        while limit is None or yielded < limit:
            query = select(EVENTS.c.seq, EVENTS.c.source, EVENTS.c.ts, EVENTS.c.payload) \
                .where(EVENTS.c.agent_key == key, EVENTS.c.seq > after)
            if types:
                query = query.where(EVENTS.c.type.in_(list(types)))
            rows = self._rows(query.order_by(EVENTS.c.seq).limit(EVENT_CHUNK))
            for seq, row_source, stamp, payload in rows:
                event = orjson.loads(payload)
                if row_source == source and _agent_of(event) == agent_id:
                    yield seq, stamp, event
                    yielded += 1
                    if limit is not None and yielded >= limit:
                        return
            if len(rows) < EVENT_CHUNK:
                return
            after = rows[-1][0]

    def agent_files(self, source: str, agent_id: str, limit: int) -> dict[str, Any]:
        """The files the agent read and wrote, deduplicated, most used first: from its tool
        calls' `file_path` and its `agent.files` lists."""
        files: dict[str, list[int]] = {}
        overflow = 0
        for _seq, _ts, event in self.agent_events(source, agent_id,
                                                  ("agent.tool_call", "agent.files")):
            for path, written in _files_of(event):
                counts = files.get(path)
                if counts is None:
                    if len(files) >= MAX_AGENT_FILES:
                        overflow += 1
                        continue
                    counts = files[path] = [0, 0]
                counts[written] += 1
        ranked = sorted(files.items(), key=lambda item: (-sum(item[1]), item[0]))
        return {"items": [{"path": path, "read": counts[0], "written": counts[1]}
                          for path, counts in ranked[:limit]],
                "distinct_files": len(files), "uncounted": overflow}

    # -- tasks ----------------------------------------------------------------------------

    def tasks(self, where: TaskFilter, sort: Sort, cursor: str | None, limit: int) -> Page:
        def query(table: FromClause) -> tuple[Select[Any], list[ColumnElement[Any]]]:
            column = table.c
            duration = func.coalesce(
                column.ended_at - func.coalesce(column.started_at, column.submitted_at),
                NULL_SORT_SQL)
            sort_key = {"submitted": func.coalesce(column.submitted_at, NULL_SORT_SQL),
                        "ended": func.coalesce(column.ended_at, NULL_SORT_SQL),
                        "cost": column.cost_nano, "duration": duration}[sort.name]
            return (_where(select(*column, sort_key.label("sort_value")),
                           *_task_conditions(where, column)),
                    [sort_key, column.source, column.task_id])

        rows = self._rows(self.reading.current().page(TASKS, query, sort, cursor, limit))
        return page_of(rows, limit, task_item,
                       lambda row: (row.sort_value, row.source, row.task_id))

    def task(self, task_id: str, source: str | None) -> dict[str, Any] | None:
        now = self.reading.current()
        row = self._one(now, TASKS, source, task_id=task_id)
        if row is None:
            return None
        item = task_item(row)
        members = sorted(now.where(AGENTS, self._rows, source=row.source, task_id=row.task_id),
                         key=lambda agent: (agent.created_at, agent.agent_id))
        item["agents"] = [agent_item(agent) for agent in members]
        item["agents_cost_usd"] = usd(sum(agent.cost_nano for agent in members))
        ids = [agent.agent_id for agent in members]
        found: list[Any] = []
        if ids:
            run_ids = sorted({step.run_id for step in now.where(
                STEPS, self._rows, source=row.source, agent_id=ids)})
            found = sorted(now.where(RUNS, self._rows, source=row.source, run_id=run_ids),
                           key=lambda run: (run.started_at is not None, run.started_at or 0.0,
                                            run.run_id))
        item["runs"] = [run_item(run) for run in found]
        return item

    # -- runs -----------------------------------------------------------------------------

    def runs(self, where: RunFilter, sort: Sort, cursor: str | None, limit: int) -> Page:
        def query(table: FromClause) -> tuple[Select[Any], list[ColumnElement[Any]]]:
            column = table.c
            sort_key = {"started": func.coalesce(column.started_at, NULL_SORT_SQL),
                        "ended": func.coalesce(column.ended_at, NULL_SORT_SQL),
                        "duration": func.coalesce(column.ended_at - column.started_at,
                                                  NULL_SORT_SQL)}[sort.name]
            return (_where(select(*column, sort_key.label("sort_value")),
                           _equal(column.source, where.source),
                           _equal(column.status, where.status),
                           _equal(column.workflow, where.workflow),
                           None if where.since is None else column.started_at >= where.since,
                           None if where.until is None else column.started_at < where.until),
                    [sort_key, column.source, column.run_id])

        rows = self._rows(self.reading.current().page(RUNS, query, sort, cursor, limit))
        return page_of(rows, limit, run_item,
                       lambda row: (row.sort_value, row.source, row.run_id))

    def run(self, run_id: str, source: str | None) -> dict[str, Any] | None:
        now = self.reading.current()
        row = self._one(now, RUNS, source, run_id=run_id)
        if row is None:
            return None
        item = run_item(row)
        steps = now.where(STEPS, self._rows, source=row.source, run_id=row.run_id)
        item["steps"] = [step_item(step) for step in sorted(
            steps, key=lambda step: (step.started_at is None, step.started_at or 0.0,
                                     step.step_id))]
        return item


def _files_of(event: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """(path, 1 if written else 0) for each file an event names."""
    path = event.get("file_path", event.get("filePath"))
    if isinstance(path, str):
        yield path, int(event.get("tool") in WRITING_TOOLS)
    for written, names in ((0, ("read", "files_read", "filesRead")),
                           (1, ("written", "files_written", "filesWritten", "files_modified"))):
        listed: object = next((event[name] for name in names if name in event), [])
        if isinstance(listed, list):
            yield from ((item, written) for item in listed if isinstance(item, str))


def _agent_of(event: dict[str, Any]) -> object:
    return event.get("agent_id", event.get("agentId"))


def _task_conditions(where: TaskFilter, column: Any) -> list[ColumnElement[bool] | None]:
    analyst: ColumnElement[bool] | None = None
    if where.analyst is not None:
        included = or_(column.analyst.is_(True), column.has_analyst_agent.is_(True))
        analyst = included if where.analyst == "included" else ~included
    search: ColumnElement[bool] | None = None
    if where.q:
        if len(where.q) > MAX_SEARCH:
            raise ReadError("q", f"must be at most {MAX_SEARCH} characters")
        pattern = "%" + where.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") \
            + "%"
        search = func.lower(column.description).like(pattern.lower(), escape="\\")
    return [_equal(column.source, where.source), _equal(column.status, where.status),
            _equal(column.task_type, where.task_type),
            _equal(column.complexity, where.complexity), analyst, search,
            None if where.since is None else column.submitted_at >= where.since,
            None if where.until is None else column.submitted_at < where.until]


def task_item(row: Any) -> dict[str, Any]:
    started = row.started_at if row.started_at is not None else row.submitted_at
    return {
        "source": row.source, "task_id": row.task_id, "task_type": row.task_type,
        "status": row.status, "complexity": row.complexity, "mode": row.mode,
        "analyst": "included" if row.analyst or row.has_analyst_agent else "excluded",
        "description": row.description, "error": row.error, "cost_usd": usd(row.cost_nano),
        "submitted_at": row.submitted_at, "started_at": row.started_at,
        "ended_at": row.ended_at, "duration_seconds": _duration(started, row.ended_at),
    }


def run_item(row: Any) -> dict[str, Any]:
    return {
        "source": row.source, "run_id": row.run_id, "workflow": row.workflow,
        "status": row.status, "started_at": row.started_at, "ended_at": row.ended_at,
        "duration_seconds": _duration(row.started_at, row.ended_at),
        "planned_steps": orjson.loads(row.steps),
    }


def step_item(row: Any) -> dict[str, Any]:
    return {
        "step_id": row.step_id, "step": row.step, "agent": row.agent, "agent_id": row.agent_id,
        "status": row.status, "started_at": row.started_at, "ended_at": row.ended_at,
        "duration_seconds": _duration(row.started_at, row.ended_at), "retries": row.retries,
    }
