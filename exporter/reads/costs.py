"""Cost and tokens over time and by dimension, from the ledger's per-day sums; the fleet summary.

The per-day sums (`daily_cost`) are what budgets already read: each usage event adds its cost
and tokens to its UTC day and labels, so these figures equal the counters on /metrics for the
same days (tokens are summed per day from migration 0006 on; earlier days hold 0 tokens).
"""

from __future__ import annotations

import contextlib
import datetime
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, FromClause, func, literal, select, union_all
from sqlalchemy.sql.elements import ColumnElement

from exporter.budgets import SECONDS_PER_DAY, epoch_day, period_bounds
from exporter.events import TERMINAL_AGENT_STATUSES
from exporter.ledger import schema
from exporter.reads.fleet import TASK_END_STATUSES, Reading, usd
from exporter.reads.pages import ReadError
from exporter.reads.pending import Current, json_values

DAILY: Final = schema.daily_cost
DIMENSIONS: Final = ("role", "model", "task_type", "workflow", "source")
PERIODS: Final = ("day", "week", "month")
GROUPS: Final = (*DIMENSIONS, *PERIODS)
TOKEN_COLUMNS: Final = (("input", "input_tokens"), ("output", "output_tokens"),
                        ("cache_read", "cache_read_tokens"),
                        ("cache_creation", "cache_creation_tokens"))
MAX_TOP: Final = 1_000


@dataclass(frozen=True, slots=True)
class DayRange:
    """UTC days `first` <= day < `end` (epoch days); None: unbounded."""

    first: int | None = None
    end: int | None = None

    def where(self, day: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        terms = []
        if self.first is not None:
            terms.append(day >= self.first)
        if self.end is not None:
            terms.append(day < self.end)
        return terms

    def holds(self, instant: float | None) -> bool:
        """`where_time` in Python, NULL included: no time passes a bound, any time passes none."""
        if instant is None:
            return self.first is None and self.end is None
        return (self.first is None or instant >= self.first * SECONDS_PER_DAY) and \
            (self.end is None or instant < self.end * SECONDS_PER_DAY)

    def where_time(self, column: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """The same days, for a column of Unix seconds."""
        terms = []
        if self.first is not None:
            terms.append(column >= self.first * SECONDS_PER_DAY)
        if self.end is not None:
            terms.append(column < self.end * SECONDS_PER_DAY)
        return terms


def parse_instant(name: str, text: str) -> float:
    """A date (YYYY-MM-DD, UTC midnight), an RFC 3339 time, or Unix seconds."""
    try:
        value = float(text)
    except ValueError:
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ReadError(name, "must be a date (YYYY-MM-DD), an RFC 3339 time or Unix "
                            "seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or not 0 <= value < 1e11:
        raise ReadError(name, "must be Unix seconds between 1970 and 5138")
    return value


def day_range(since: str | None, until: str | None) -> DayRange:
    """`from` rounds down to its day, `to` (exclusive) up to the next day boundary."""
    first = None if since is None else epoch_day(parse_instant("from", since))
    end = None if until is None else math.ceil(parse_instant("to", until) / SECONDS_PER_DAY)
    if first is not None and end is not None and end < first:
        raise ReadError("to", "must not be before from")
    return DayRange(first, end)


def _day_text(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * SECONDS_PER_DAY))


def _period_of(group: str, day: int) -> str:
    if group == "day":
        return _day_text(day)
    if group == "week":  # the ISO week's Monday
        return _day_text(day - (day + 3) % 7)
    return time.strftime("%Y-%m", time.gmtime(day * SECONDS_PER_DAY))


def _empty() -> list[int]:
    return [0] * (1 + len(TOKEN_COLUMNS))


def _entry(group: str, key: str, sums: Sequence[int]) -> dict[str, Any]:
    return {group: key, "cost_usd": usd(sums[0]),
            "tokens": {name: sums[index + 1] for index, (name, _) in enumerate(TOKEN_COLUMNS)}}


# Copies of the pending rows a read takes before it gives up laying them over its snapshot
# (each time, a checkpoint was written between the copy and the snapshot) and writes one.
DAILY_ATTEMPTS: Final = 3


class CostReads:
    def __init__(self, engine: Engine, reading: Reading) -> None:
        self.engine = engine
        self.reading = reading

    @contextlib.contextmanager
    def _daily(self) -> Iterator[tuple[Connection, Current, FromClause]]:
        """A connection (one snapshot), the tables as of now, and the day sums as of now:
        the pending sums the snapshot lacks, counted once (`Pending.daily_rows`)."""
        for _ in range(DAILY_ATTEMPTS):
            now = self.reading.current()
            with self.engine.connect() as connection:
                stored = connection.execute(select(schema.checkpoint.c.applied_seq)).scalar()
                daily = now.daily(int(stored or 0))
                if daily is not None:
                    yield connection, now, daily
                    return
        now = Current(None)
        if self.reading.synced is not None:
            self.reading.synced()
        with self.engine.connect() as connection:
            yield connection, now, DAILY

    def costs(self, group: str, days: DayRange, top: int | None = None,
              filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Cost and tokens per value of `group` (a dimension, by cost, highest first; or a
        period, oldest first), over `days`, among rows matching `filters` (dimension: value)."""
        if group not in GROUPS:
            raise ReadError("group_by", f"must be one of {', '.join(GROUPS)}")
        if top is not None and not 1 <= top <= MAX_TOP:
            raise ReadError("top", f"must be 1 to {MAX_TOP}")
        with self._daily() as (connection, _now, daily):
            key_column = daily.c.day if group in PERIODS else daily.c[group]
            sums = [func.sum(daily.c.cost_nano),
                    *(func.sum(daily.c[column]) for _, column in TOKEN_COLUMNS)]
            terms = days.where(daily.c.day)
            terms += [daily.c[name] == value for name, value in (filters or {}).items()]
            query = select(key_column, *sums).where(*terms).group_by(key_column)
            rows = connection.execute(query).all()
        totals: dict[str, list[int]] = {}
        for key, *values in rows:
            name = _period_of(group, key) if group in PERIODS else str(key)
            into = totals.setdefault(name, _empty())
            for index, value in enumerate(values):
                into[index] += int(value or 0)
        if group in PERIODS:
            ordered = sorted(totals.items())
        else:
            ordered = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
        if top is not None:
            ordered = ordered[:top]
        return [_entry(group, key, values) for key, values in ordered]

    def per_completed_task(self, days: DayRange) -> dict[str, Any]:
        """Completed tasks (ended within `days`) and their cost, with and without ANALYST.

        Summed over the stored rows in SQL, then corrected in Python for the pending ones (the
        stored rows they replace out, their own in): laid over in SQL, every completed task
        was tested against the pending keys, 16.5 ms against 3.5 for 6,000 tasks with 600
        pending (docs/benchmarks.md)."""
        tasks = schema.tasks
        column = tasks.c
        included = (column.analyst.is_(True)) | (column.has_analyst_agent.is_(True))
        conditions = [column.status == "completed", *days.where_time(column.ended_at)]
        pending = self.reading.current().pending_rows(tasks)
        query: Any = select(literal(0).label("replaced"), literal("").label("source"),
                            literal("").label("task_id"), included.label("included"),
                            func.count().label("tasks"), func.sum(column.cost_nano)
                            ).where(*conditions).group_by(included)
        if pending:
            # In the same statement, so that the sums and what they subtract are one snapshot.
            ids = sorted({row.task_id for row in pending})
            query = union_all(query, select(
                literal(1), column.source, column.task_id, included, literal(1),
                column.cost_nano).where(*conditions, column.task_id.in_(json_values(ids))))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        keys = {(row.source, row.task_id) for row in pending}
        sums = {True: [0, 0], False: [0, 0]}
        for replaced, source, task_id, flag, count, nano in rows:
            if replaced and (source, task_id) not in keys:
                continue
            sign = -1 if replaced else 1
            sums[bool(flag)][0] += sign * int(count)
            sums[bool(flag)][1] += sign * int(nano or 0)
        for row in pending:
            if row.status == "completed" and days.holds(row.ended_at):
                flag = bool(row.analyst) or bool(row.has_analyst_agent)
                sums[flag][0] += 1
                sums[flag][1] += int(row.cost_nano)
        result = {}
        for name, flag in (("included", True), ("excluded", False)):
            count, nano = sums[flag]
            result[name] = {"tasks": count, "cost_usd": usd(nano),
                            "mean_usd": usd(nano) / count if count else None}
        return result

    def summary(self, now: float) -> dict[str, Any]:
        """The fleet now: agents by status and role, tasks in flight, active runs, spend."""
        with self._daily() as (connection, current, daily):
            agents, tasks = current.table(schema.agents).c, current.table(schema.tasks).c
            runs = current.table(schema.workflow_runs).c
            by_status = connection.execute(
                select(agents.status, agents.role, func.count())
                .where(agents.deleted.is_(False)).group_by(agents.status, agents.role)).all()
            in_flight = connection.execute(
                select(tasks.status, func.count())
                .where(tasks.status.not_in(TASK_END_STATUSES)).group_by(tasks.status)).all()
            active_runs = connection.execute(
                select(func.count()).where(runs.status == "running")).scalar() or 0
            spend = {}
            for period in PERIODS:
                start, _end = period_bounds(period, now)
                nano = connection.execute(select(func.sum(daily.c.cost_nano)).where(
                    daily.c.day >= epoch_day(start))).scalar()
                spend[{"day": "today", "week": "this_week", "month": "this_month"}[period]] = \
                    usd(int(nano or 0))
        agent_status: dict[str, int] = {}
        agent_role: dict[str, int] = {}
        live = 0
        for status, role, count in by_status:
            agent_status[status] = agent_status.get(status, 0) + count
            if status not in TERMINAL_AGENT_STATUSES:
                agent_role[role] = agent_role.get(role, 0) + count
                live += count
        return {
            "agents": {"live": live, "by_status": agent_status, "live_by_role": agent_role},
            "tasks_in_flight": {"total": sum(count for _, count in in_flight),
                                "by_status": dict(in_flight)},
            "active_runs": int(active_runs), "spend_usd": spend,
        }
