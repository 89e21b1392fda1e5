"""The read API (viewer): the fleet, its agents, tasks, runs, costs and budgets; raw events out.

Lists answer `{"items": [...], "next_cursor": ...}` a page at a time, or, with `format=csv` or
`format=ndjson` (or the Accept header), every matching row streamed. Every read sees every
acknowledged event (`Reading`, exporter/reads/fleet.py): read your writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from exporter.api import read_models as models
from exporter.api.deps import guard
from exporter.api.errors import ApiError, JSONResponse
from exporter.api.formats import LIST_FORMATS, MEDIA_TYPES, Format, encoded, negotiate
from exporter.api.guards import RateLimiter
from exporter.events import EVENT_TYPES, TYPE_ALIASES
from exporter.reads.budgets import budget_report
from exporter.reads.costs import CostReads, day_range, parse_instant
from exporter.reads.export import EventRange, export_events
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
from exporter.reads.pages import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    ReadError,
    Sort,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from exporter.service import Exporter
from exporter.tokens import TokenRegistry

NAME: Final = 128
Name = Annotated[str | None, Query(max_length=NAME)]
Id = Annotated[str, Path(max_length=NAME)]
Cursor = Annotated[str | None, Query(max_length=1024, description="next_cursor of the page "
                                     "before")]
Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description=f"rows per page (JSON, "
                                    f"default {DEFAULT_LIMIT}); with csv or ndjson, the most "
                                    "rows streamed (default all)")]
FormatQuery = Annotated[str | None, Query(max_length=8, alias="format",
                                          description="json, csv or ndjson")]
_INSTANT: Final = "YYYY-MM-DD, RFC 3339 or Unix seconds"
From = Annotated[str | None, Query(alias="from", max_length=40, description=_INSTANT)]
To = Annotated[str | None, Query(alias="to", max_length=40,
                                 description=_INSTANT + " (exclusive)")]
_ERRORS: Final = {401: {"description": "no or unknown token"},
                  403: {"description": "the token's role may not read"},
                  422: {"description": "a query parameter is out of bounds"},
                  429: {"description": "too many requests for this token (Retry-After)"}}
_NOT_FOUND: Final = {404: {"description": "no such id"}}


def _invalid(error: ReadError) -> ApiError:
    return ApiError(422, "invalid_query", str(error),
                    [{"field": error.field, "reason": error.reason}])


def _instant(name: str, text: str | None) -> float | None:
    try:
        return None if text is None else parse_instant(name, text)
    except ReadError as error:
        raise _invalid(error) from None


def _span(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    start, end = _instant("from", since), _instant("to", until)
    if start is not None and end is not None and end < start:
        raise _invalid(ReadError("to", "must not be before from"))
    return start, end


def _sort(text: str, allowed: tuple[str, ...]) -> Sort:
    try:
        return Sort.parse(text, allowed)
    except ReadError as error:
        raise _invalid(error) from None


def _types(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    types = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in types if name not in EVENT_TYPES]
    if unknown or len(types) > len(EVENT_TYPES):
        raise ApiError(422, "invalid_query", "types must name event types, comma-separated",
                       [{"field": "types", "reason": f"unknown: {', '.join(unknown)[:200]}"}])
    return types


# A page of a list: (the reader to use, the cursor, the page size) -> the page.
PageReader = Callable[[FleetReads, str | None, int], Page]


@dataclass(frozen=True, slots=True)
class _Readers:
    synced: FleetReads  # for the page a request asks for: it sees every acknowledged event
    unsynced: FleetReads  # for the pages after it in one streamed answer


async def _listed(request: Request, requested: str | None, cursor: str | None,
                  limit: int | None, read: PageReader, readers: _Readers) -> Response:
    """One page as JSON, or every row from `cursor` on streamed as CSV or NDJSON."""
    form = negotiate(requested, request.headers.get("accept", ""))
    size = check_limit(limit or DEFAULT_LIMIT) if form == "json" else \
        MAX_LIMIT if limit is None else min(limit, MAX_LIMIT)
    try:
        first = await run_in_threadpool(read, readers.synced, cursor, size)
    except ReadError as error:
        raise _invalid(error) from None
    if form == "json":
        return JSONResponse({"items": first.items, "next_cursor": first.next_cursor})
    return _stream(_all_rows(first, read, readers.unsynced, limit), form)


def _all_rows(first: Page, read: PageReader, reads: FleetReads,
              limit: int | None) -> Iterator[dict[str, Any]]:
    page, sent = first, 0
    while True:
        for item in page.items:
            if limit is not None and sent >= limit:
                return
            yield item
            sent += 1
        if page.next_cursor is None:
            return
        page = read(reads, page.next_cursor, MAX_LIMIT)


def _stream(items: Iterator[dict[str, Any]], form: Format) -> StreamingResponse:
    return StreamingResponse(encoded(items, form), media_type=MEDIA_TYPES[form])


def read_router(exporter: Exporter, tokens: TokenRegistry, limiter: RateLimiter,
                subscribers: Callable[[], int]) -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=_ERRORS,  # type: ignore[arg-type]
                       dependencies=[Depends(guard(tokens, exporter.telemetry, "read",
                                                   limiter))])
    pipeline = exporter.pipeline
    # Read your writes: SQLite lays the pending changes over the rows (and writes them first
    # only when checkpoints keep overtaking its copies); PostgreSQL (no json_each) writes
    # them first.
    reading = Reading(synced=pipeline.synced,
                      pending=pipeline.pending if exporter.ledger.bulk else None)
    fleet = FleetReads(exporter.ledger.reader, reading)
    readers = _Readers(fleet, FleetReads(exporter.ledger.reader, Reading()))
    costs = CostReads(exporter.ledger.reader, reading)

    def budgets() -> list[dict[str, Any]]:
        now = time.time()
        return [budget_report(budget, exporter.state.budgets, exporter.lock,
                              from_config=exporter.budgets.from_config(budget.name), now=now)
                for budget in exporter.budgets.budgets]

    @router.get("/status", summary="The fleet now: agents, tasks, runs, spend, budgets",
                response_model=models.Status)
    async def status() -> Response:
        summary = await run_in_threadpool(costs.summary, time.time())
        with exporter.lock:
            summary["events_accepted"] = sum(exporter.state.families.accepted.values.values())
        summary["budgets"] = await run_in_threadpool(budgets)
        summary["stream_subscribers"] = subscribers()
        return JSONResponse(summary)

    @router.get("/agents", summary="Agents, filtered and sorted, a page at a time",
                response_model=models.AgentPage, responses=LIST_FORMATS)  # type: ignore[arg-type]
    async def agents(request: Request, source: Name = None, status: Name = None,
                     role: Name = None, model: Name = None, task_id: Name = None,
                     task_type: Name = None, workflow: Name = None, live: bool | None = None,
                     sort: Annotated[str, Query(max_length=16, description=(
                         f"{', '.join(AGENT_SORTS)}; - for descending"))] = "-last_activity",
                     cursor: Cursor = None, limit: Limit = None,
                     format: FormatQuery = None) -> Response:
        where = AgentFilter(source, status, role, model, task_id, task_type, workflow, live)
        order = _sort(sort, AGENT_SORTS)

        return await _listed(request, format, cursor, limit, lambda reads, after, size:
                             reads.agents(where, order, after, size), readers)

    @router.get("/agents/{agent_id:path}/events", summary="An agent's events in ledger order",
                response_model=models.EventPage, responses={**_NOT_FOUND, **LIST_FORMATS})  # type: ignore[dict-item]
    async def agent_events(request: Request, agent_id: Id, source: Name = None,
                           types: Annotated[str | None, Query(max_length=1024)] = None,
                           cursor: Cursor = None, limit: Limit = None,
                           format: FormatQuery = None) -> Response:
        owner = await _agent_source(agent_id, source)
        wanted = _types(types)

        return await _listed(request, format, cursor, limit, lambda reads, after, size:
                             _event_page(reads, owner, agent_id, wanted, after, size,
                                         _event_item), readers)

    @router.get("/agents/{agent_id:path}/logs", summary="An agent's log lines in order",
                response_model=models.LogPage, responses={**_NOT_FOUND, **LIST_FORMATS})  # type: ignore[dict-item]
    async def agent_logs(request: Request, agent_id: Id, source: Name = None,
                         cursor: Cursor = None, limit: Limit = None,
                         format: FormatQuery = None) -> Response:
        owner = await _agent_source(agent_id, source)

        return await _listed(request, format, cursor, limit, lambda reads, after, size:
                             _event_page(reads, owner, agent_id, ("log.entry",), after, size,
                                         _log_item), readers)

    @router.get("/agents/{agent_id:path}/files",
                summary="The files an agent read and wrote, most used first",
                response_model=models.AgentFiles, responses=_NOT_FOUND)  # type: ignore[arg-type]
    async def agent_files(agent_id: Id, source: Name = None,
                          limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
                          ) -> Response:
        owner = await _agent_source(agent_id, source)
        return JSONResponse(await run_in_threadpool(fleet.agent_files, owner, agent_id, limit))

    async def _agent_source(agent_id: str, source: str | None) -> str:
        found = await _found(fleet.agent, agent_id, source, "agent")
        return str(found["source"])

    @router.get("/agents/{agent_id:path}", summary="One agent: totals, tool calls, its task",
                response_model=models.AgentDetail, responses=_NOT_FOUND)  # type: ignore[arg-type]
    async def agent(agent_id: Id, source: Name = None) -> Response:
        return JSONResponse(await _found(fleet.agent, agent_id, source, "agent"))

    @router.get("/tasks", summary="Tasks, filtered and sorted, a page at a time",
                response_model=models.TaskPage, responses=LIST_FORMATS)  # type: ignore[arg-type]
    async def tasks(request: Request, source: Name = None, status: Name = None,
                    task_type: Name = None,
                    analyst: Annotated[str | None, Query(pattern="^(included|excluded)$")] = None,
                    complexity: Annotated[str | None, Query(pattern="^(simple|complex)$")] = None,
                    since: From = None, until: To = None,
                    q: Annotated[str | None, Query(max_length=256, description=(
                        "text in the task's description"))] = None,
                    sort: Annotated[str, Query(max_length=16, description=(
                        f"{', '.join(TASK_SORTS)}; - for descending"))] = "-submitted",
                    cursor: Cursor = None, limit: Limit = None,
                    format: FormatQuery = None) -> Response:
        where = TaskFilter(source, status, task_type, analyst, complexity,
                           *_span(since, until), q)
        order = _sort(sort, TASK_SORTS)

        return await _listed(request, format, cursor, limit, lambda reads, after, size:
                             reads.tasks(where, order, after, size), readers)

    @router.get("/tasks/{task_id:path}", summary="One task: its agents and their cost, its runs",
                response_model=models.TaskDetail, responses=_NOT_FOUND)  # type: ignore[arg-type]
    async def task(task_id: Id, source: Name = None) -> Response:
        return JSONResponse(await _found(fleet.task, task_id, source, "task"))

    @router.get("/runs", summary="Workflow runs, filtered and sorted, a page at a time",
                response_model=models.RunPage, responses=LIST_FORMATS)  # type: ignore[arg-type]
    async def runs(request: Request, source: Name = None, status: Name = None,
                   workflow: Name = None,
                   since: From = None, until: To = None,
                   sort: Annotated[str, Query(max_length=16, description=(
                       f"{', '.join(RUN_SORTS)}; - for descending"))] = "-started",
                   cursor: Cursor = None, limit: Limit = None,
                   format: FormatQuery = None) -> Response:
        where = RunFilter(source, status, workflow, *_span(since, until))
        order = _sort(sort, RUN_SORTS)

        return await _listed(request, format, cursor, limit, lambda reads, after, size:
                             reads.runs(where, order, after, size), readers)

    @router.get("/runs/{run_id:path}", summary="One run with its steps as a timeline",
                response_model=models.RunDetail, responses=_NOT_FOUND)  # type: ignore[arg-type]
    async def run(run_id: Id, source: Name = None) -> Response:
        return JSONResponse(await _found(fleet.run, run_id, source, "run"))

    @router.get("/costs", summary="Cost and tokens by a dimension or a period",
                response_model=models.CostAnswer, responses=LIST_FORMATS)  # type: ignore[arg-type]
    async def cost(request: Request,
                   group_by: Annotated[str, Query(max_length=16, description=(
                       "role, model, task_type, workflow, source, day, week or month"))] = "role",
                   since: From = None, until: To = None,
                   top: Annotated[int | None, Query(ge=1, le=1000)] = None,
                   role: Name = None, model: Name = None, task_type: Name = None,
                   workflow: Name = None, source: Name = None,
                   format: FormatQuery = None) -> Response:
        form = negotiate(format, request.headers.get("accept", ""))
        filters = {name: value for name, value in (
            ("role", role.upper() if role else None), ("model", model),
            ("task_type", task_type), ("workflow", workflow), ("source", source))
            if value is not None}
        try:
            days = day_range(since, until)
            # Both in one trip to the thread pool: each trip waits for a thread and the loop.
            items, per_task = await run_in_threadpool(
                lambda: (costs.costs(group_by, days, top, filters),
                         costs.per_completed_task(days)))
        except ReadError as error:
            raise _invalid(error) from None
        if form != "json":
            return _stream(iter(items), form)
        return JSONResponse({"items": items, "group_by": group_by,
                             "per_completed_task": per_task})

    @router.get("/events/export", summary="Raw events of a range, re-ingestible (NDJSON)",
                responses={200: {"content": {"application/x-ndjson": {
                    "schema": {"type": "string"}}}}})
    async def export(after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                     before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                     since: From = None, until: To = None,
                     types: Annotated[str | None, Query(max_length=1024)] = None,
                     source: Name = None) -> StreamingResponse:
        where = EventRange(after, before, *_span(since, until), _types(types), source)
        engine = exporter.ledger.reader

        def lines() -> Iterator[bytes]:
            for rows in export_events(engine, where):
                yield b"\n".join(payload for _seq, payload in rows) + b"\n"
        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return router


async def _found(read: Callable[[str, str | None], dict[str, Any] | None], entity_id: str,
                 source: str | None, kind: str) -> dict[str, Any]:
    try:
        found = await run_in_threadpool(read, entity_id, source)
    except ReadError as error:
        raise _invalid(error) from None
    if found is None:
        raise ApiError(404, "not_found", f"no {kind} {entity_id!r}"
                       + (f" from source {source!r}" if source else ""))
    return found


def _event_item(seq: int, stamp: float, event: dict[str, Any]) -> dict[str, Any]:
    stated = str(event.get("type"))
    return {"seq": seq, "type": TYPE_ALIASES.get(stated, stated), "timestamp": stamp,
            "event": event}


def _log_item(seq: int, stamp: float, event: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "timestamp": stamp, "level": event.get("level"),
            "message": event.get("message")}


def _event_page(fleet: FleetReads, source: str, agent_id: str, types: tuple[str, ...],
                cursor: str | None, size: int,
                item: Callable[[int, float, dict[str, Any]], dict[str, Any]]) -> Page:
    after = 0 if cursor is None else decode_cursor(cursor, 1)[0]
    if not isinstance(after, int):
        raise ReadError("cursor", "is not a cursor this list gave")
    rows = list(fleet.agent_events(source, agent_id, types or None, after, size + 1))
    more = len(rows) > size
    rows = rows[:size]
    return Page([item(*row) for row in rows],
                encode_cursor([rows[-1][0]]) if more and rows else None)

