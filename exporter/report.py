"""`orchestrator-exporter report`: the cost of a UTC day, ISO week or month, as Markdown, CSV
or one self-contained HTML file (exporter/report_html.py), for a person or a mail.

A client of the read API like `top` (`--url`, `--token`, a `viewer` token is enough). Without
`--at` the period is the last complete one (yesterday, last week, last month), which is what a
report sent by cron in the morning should show; `--at DATE` reports the period holding DATE,
the current one included (then marked in progress). The spend figures come from `/api/v1/costs`,
which sums the ledger's per-day figures, so the report's totals equal orchestrator_cost_usd_total
over the same days (docs/reports.md).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from exporter.budgets import SECONDS_PER_DAY, period_bounds
from exporter.config import PERIODS
from exporter.ctl import add_connection_flags, api_client, error_text, exporter_url
from exporter.reads.budgets import budget_state
from exporter.terminal import usd

DIMENSIONS: Final = ("role", "model", "task_type", "workflow")
DIMENSION_TITLES: Final = {"role": "role", "model": "model", "task_type": "task type",
                           "workflow": "workflow"}
TOP: Final = 10
# Agents have no time filter in the read API: the costliest are scanned for those active in the
# period, a page at a time, up to this many (a fleet's agents are mostly short-lived).
AGENT_PAGE: Final = 1_000
AGENT_SCAN: Final = 10_000
DESCRIPTION_CHARS: Final = 120


class ReportError(Exception):
    """The exporter refused a read (401, 422...) or could not be reached."""


@dataclass(frozen=True, slots=True)
class Period:
    """A UTC day, ISO week (Monday first) or calendar month; `end` is exclusive."""

    kind: str
    start: float
    end: float

    @classmethod
    def holding(cls, kind: str, instant: float) -> Period:
        return cls(kind, *period_bounds(kind, instant))

    def previous(self) -> Period:
        return Period.holding(self.kind, self.start - 1)

    @property
    def first_day(self) -> str:
        return _date(self.start)

    @property
    def end_day(self) -> str:
        """The day after the period, as `/costs` takes `to` (exclusive)."""
        return _date(self.end)

    @property
    def last_day(self) -> str:
        return _date(self.end - SECONDS_PER_DAY)

    @property
    def name(self) -> str:
        """`2026-11-30`, `2026-W48` or `2026-11`."""
        if self.kind == "day":
            return self.first_day
        if self.kind == "week":
            year, week, _ = datetime.datetime.fromtimestamp(self.start, datetime.UTC).isocalendar()
            return f"{year}-W{week:02d}"
        return self.first_day[:7]

    @property
    def title(self) -> str:
        span = "" if self.kind == "day" else f" ({self.first_day} to {self.last_day})"
        return f"{self.kind} {self.name}{span}"


def report_period(kind: str, at: datetime.date | None, now: float) -> Period:
    """The period of `kind` holding `at`, else the last complete one before `now`."""
    if at is not None:
        return Period.holding(kind, _seconds(at))
    return Period.holding(kind, now).previous()


@dataclass(frozen=True, slots=True)
class Line:
    """One row of spend: this period's cost and tokens, and the previous period's cost."""

    key: str
    cost_usd: float
    tokens: int
    previous_usd: float | None = None

    @property
    def change_usd(self) -> float | None:
        return None if self.previous_usd is None else self.cost_usd - self.previous_usd

    @property
    def change_ratio(self) -> float | None:
        """The change as a share of the previous cost; None when there was none."""
        if not self.previous_usd:
            return None
        return (self.cost_usd - self.previous_usd) / self.previous_usd


@dataclass(frozen=True, slots=True)
class CompletedTasks:
    """Tasks completed in the period, with or without an ANALYST, and their mean cost."""

    analyst: str  # included | excluded
    tasks: int
    cost_usd: float
    mean_usd: float | None
    previous_mean_usd: float | None


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """A budget as `/budgets` shows it now, and its scope's spend in the report's period."""

    budget: dict[str, Any]
    period_spent_usd: float

    def state_in(self, period: Period) -> str | None:
        """The state the budget reached in the report's period, when its period is of the same
        kind (a monthly budget has no state for one day)."""
        if self.budget["period"] != period.kind:
            return None
        return budget_state(self.period_spent_usd, float(self.budget["limit_usd"]))


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report shows, read from the exporter at `generated_at`."""

    period: Period
    previous: Period
    generated_at: float
    url: str
    total: Line
    by: dict[str, list[Line]]  # dimension -> lines, costliest first
    days: list[Line]
    completed: list[CompletedTasks]
    budgets: list[BudgetLine]
    tasks: list[dict[str, Any]]
    agents: list[dict[str, Any]]

    @property
    def complete(self) -> bool:
        return self.period.end <= self.generated_at


# -- reading ------------------------------------------------------------------------------------


class Reader:
    """The read API calls a report makes."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self.client.get(path, params=params)
        except httpx.HTTPError as error:
            raise ReportError(f"cannot reach {self.client.base_url}: {error}") from None
        if not response.is_success:
            raise ReportError(error_text(response))
        return response.json()

    def costs(self, group: str, period: Period, **filters: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.get("/api/v1/costs", {
            "group_by": group, "from": period.first_day, "to": period.end_day, **filters})
        return answer

    def tasks(self, period: Period) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/tasks", {"sort": "-cost", "from": period.first_day,
                                            "to": period.end_day, "limit": TOP})
        return list(answer["items"])

    def agents(self, period: Period) -> list[dict[str, Any]]:
        """The costliest agents alive at some time in the period (created before its end, last
        active at or after its start)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(AGENT_SCAN // AGENT_PAGE):
            params: dict[str, Any] = {"sort": "-cost", "limit": AGENT_PAGE}
            if cursor is not None:
                params["cursor"] = cursor
            page = self.get("/api/v1/agents", params)
            found += [agent for agent in page["items"] if agent["created_at"] < period.end
                      and agent["last_activity"] >= period.start]
            cursor = page["next_cursor"]
            if len(found) >= TOP or cursor is None:
                break
        return found[:TOP]


def read_report(client: httpx.Client, period: Period, *, url: str,
                now: float | None = None) -> Report:
    """Read the report of `period` (and the previous period, for trends). Raises ReportError."""
    generated_at = time.time() if now is None else now
    reader, previous = Reader(client), period.previous()
    now_by = {dimension: reader.costs(dimension, period) for dimension in DIMENSIONS}
    before_by = {dimension: reader.costs(dimension, previous) for dimension in DIMENSIONS}
    by = {dimension: _compared(dimension, now_by[dimension]["items"],
                               before_by[dimension]["items"]) for dimension in DIMENSIONS}
    # Every dimension sums to the same total; role is the one every usage event has.
    total = Line("total", sum(line.cost_usd for line in by["role"]),
                 sum(line.tokens for line in by["role"]),
                 sum(line.previous_usd or 0.0 for line in by["role"]))
    return Report(
        period=period, previous=previous, generated_at=generated_at, url=url, total=total, by=by,
        days=_days(period, reader.costs("day", period)["items"], generated_at),
        completed=_completed(now_by["role"]["per_completed_task"],
                             before_by["role"]["per_completed_task"]),
        budgets=[BudgetLine(budget, _spent(reader, period, budget["scope"]))
                 for budget in reader.get("/api/v1/budgets", {})["items"]],
        tasks=reader.tasks(period), agents=reader.agents(period))


def _tokens(item: dict[str, Any]) -> int:
    return sum(int(count) for count in item["tokens"].values())


def _compared(dimension: str, items: list[dict[str, Any]],
              previous: list[dict[str, Any]]) -> list[Line]:
    """This period's lines beside the previous period's; a key spent on only before shows
    with 0, so a drop to nothing is seen."""
    before = {str(item[dimension]): float(item["cost_usd"]) for item in previous}
    lines = [Line(str(item[dimension]), float(item["cost_usd"]), _tokens(item),
                  before.get(str(item[dimension]), 0.0)) for item in items]
    seen = {line.key for line in lines}
    lines += [Line(key, 0.0, 0, cost) for key, cost in sorted(before.items(), key=lambda pair:
                                                               (-pair[1], pair[0]))
              if key not in seen]
    return lines


def _days(period: Period, items: list[dict[str, Any]], now: float) -> list[Line]:
    """Every day of the period up to today, days without spend at 0."""
    spent = {str(item["day"]): item for item in items}
    lines = []
    day = period.start
    while day < min(period.end, now):
        item = spent.get(_date(day))
        lines.append(Line(_date(day), float(item["cost_usd"]) if item else 0.0,
                          _tokens(item) if item else 0))
        day += SECONDS_PER_DAY
    return lines


def _completed(now: dict[str, Any], before: dict[str, Any]) -> list[CompletedTasks]:
    return [CompletedTasks(name, int(now[name]["tasks"]), float(now[name]["cost_usd"]),
                           now[name]["mean_usd"], before[name]["mean_usd"])
            for name in ("included", "excluded")]


def _spent(reader: Reader, period: Period, scope: dict[str, str]) -> float:
    return sum(float(item["cost_usd"]) for item in reader.costs("role", period, **scope)["items"])


# -- Markdown -----------------------------------------------------------------------------------


def render_markdown(report: Report) -> str:
    """The report as Markdown: a heading, the totals, then one table per section."""
    period, total = report.period, report.total
    parts = [
        f"# Cost report: {period.title}",
        f"{status_line(report)}. Generated {when(report.generated_at)} from "
        f"{_md(report.url)}; compared with {report.previous.title}.",
        f"**Total: {usd(total.cost_usd)}** ({_trend(total)}) · {total.tokens:,} tokens",
    ]
    for dimension in DIMENSIONS:
        parts.append(f"## Spend by {DIMENSION_TITLES[dimension]}")
        parts.append(_md_table((DIMENSION_TITLES[dimension], "cost", "previous", "change",
                                "change %", "tokens"),
                               [line_cells(line) for line in report.by[dimension]]))
    parts += ["## Spend by day", _md_table(("day", "cost", "tokens"), [
        (line.key, usd(line.cost_usd), f"{line.tokens:,}") for line in report.days])]
    parts += ["## Cost per completed task", _md_table(
        ("tasks", "completed", "cost", "mean per task", "previous mean", "change %"),
        [completed_cells(item) for item in report.completed])]
    parts += ["## Budgets", budget_note(report)]
    if report.budgets:
        parts.append(_md_table(BUDGET_COLUMNS, [budget_cells(line, period)
                                                for line in report.budgets]))
    parts += [f"## Top {TOP} tasks", "Submitted in the period, costliest first.",
              _md_table(TASK_COLUMNS, [task_cells(task) for task in report.tasks])]
    parts += [f"## Top {TOP} agents", AGENT_NOTE,
              _md_table(AGENT_COLUMNS, [agent_cells(agent) for agent in report.agents])]
    return "\n\n".join(parts) + "\n"


BUDGET_COLUMNS: Final = ("budget", "period", "scope", "limit", "spent in report",
                         "state in report", "spent now", "projected", "state now")
TASK_COLUMNS: Final = ("task", "type", "status", "cost", "description")
AGENT_COLUMNS: Final = ("agent", "role", "model", "status", "task", "cost", "tokens")
AGENT_NOTE: Final = ("Alive in the period, costliest first; an agent's cost is its whole "
                     "life's.")


def status_line(report: Report) -> str:
    if report.complete:
        return "Complete period"
    return f"In progress: up to {when(report.generated_at)}"


def budget_note(report: Report) -> str:
    """What the budget columns mean."""
    return ("Spent in report: the budget's scope in this period; its state in report only "
            f"for budgets per {report.period.kind}. Now: the budget's own current period, as "
            "/api/v1/budgets answers.")


def line_cells(line: Line) -> tuple[str, ...]:
    """A row of a spend table: key, cost, previous, change, change %, tokens."""
    return (line.key, usd(line.cost_usd), usd_or_dash(line.previous_usd),
            signed(line.change_usd), percent(line.change_ratio), f"{line.tokens:,}")


def completed_cells(item: CompletedTasks) -> tuple[str, ...]:
    """A row of the per-completed-task table."""
    name = "with ANALYST" if item.analyst == "included" else "without ANALYST"
    change = None
    if item.mean_usd is not None and item.previous_mean_usd:
        change = (item.mean_usd - item.previous_mean_usd) / item.previous_mean_usd
    return (name, f"{item.tasks:,}", usd(item.cost_usd), usd_or_dash(item.mean_usd),
            usd_or_dash(item.previous_mean_usd), percent(change))


def budget_cells(line: BudgetLine, period: Period) -> tuple[str, ...]:
    """A row of the budgets table."""
    budget = line.budget
    return (str(budget["name"]), str(budget["period"]), scope_text(budget["scope"]),
            usd(budget["limit_usd"]), usd(line.period_spent_usd), line.state_in(period) or "-",
            usd(budget["spent_usd"]), usd(budget["projected_usd"]), str(budget["state"]))


def task_cells(task: dict[str, Any]) -> tuple[str, ...]:
    """A row of the top tasks table."""
    return (str(task["task_id"]), str(task["task_type"]), str(task["status"]),
            usd(task["cost_usd"]), short(task.get("description")))


def agent_cells(agent: dict[str, Any]) -> tuple[str, ...]:
    """A row of the top agents table."""
    return (str(agent["agent_id"]), str(agent["role"]), str(agent["model"]),
            str(agent["status"]), str(agent["task_id"] or "-"), usd(agent["cost_usd"]),
            f"{agent['tokens']['total']:,}")


def scope_text(scope: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in scope.items()) or "fleet"


def short(text: object) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= DESCRIPTION_CHARS else flat[:DESCRIPTION_CHARS - 1] + "…"


# Backslash-escaped so that ids and descriptions (untrusted) never become links, emphasis,
# inline HTML or extra table cells.
_MD_SPECIAL: Final = str.maketrans({character: "\\" + character for character in "\\`*_[]<>|"})


def _md(text: str) -> str:
    return " ".join(text.split()).translate(_MD_SPECIAL)


def _md_table(columns: Iterable[str], rows: list[tuple[str, ...]]) -> str:
    header = list(columns)
    if not rows:
        return "None."
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _trend(line: Line) -> str:
    return (f"previous {usd_or_dash(line.previous_usd)}, {signed(line.change_usd)}, "
            f"{percent(line.change_ratio)}")


def usd_or_dash(amount: float | None) -> str:
    return "-" if amount is None else usd(amount)


def signed(amount: float | None) -> str:
    """`+$1.50`, `-$0.0040`, `$0.00`; `-` when there is nothing to compare with."""
    if amount is None:
        return "-"
    if round(amount, 9) == 0:
        return usd(0)
    return ("+" if amount > 0 else "-") + usd(abs(amount))


def percent(ratio: float | None) -> str:
    """`+12.5%`; `-` when the previous amount was 0 (a share of nothing)."""
    return "-" if ratio is None else f"{ratio:+.1%}"


def when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _date(seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def _seconds(day: datetime.date) -> float:
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp()


# -- CSV ----------------------------------------------------------------------------------------


CSV_COLUMNS: Final = ("section", "key", "cost_usd", "previous_cost_usd", "change_usd",
                      "change_percent", "tokens", "count", "limit_usd", "spent_usd",
                      "projected_usd", "state", "period_state", "detail")
# A spreadsheet runs a cell starting with one of these as a formula: untrusted text (ids,
# descriptions) gets a leading apostrophe, as OWASP advises against CSV injection.
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def render_csv(report: Report) -> str:
    """The report as one CSV table, a `section` column telling its parts apart
    (docs/reports.md lists the sections and the columns each fills)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_rows(report))
    return out.getvalue()


def _csv_rows(report: Report) -> Iterable[dict[str, object]]:
    period, previous = report.period, report.previous
    for key, value in (("period", period.name), ("kind", period.kind),
                       ("from", period.first_day), ("to", period.end_day),
                       ("previous_from", previous.first_day), ("previous_to", previous.end_day),
                       ("complete", str(report.complete).lower()),
                       ("generated_at", when(report.generated_at))):
        yield {"section": "report", "key": key, "detail": value}
    yield _csv_line("total", report.total)
    for dimension in DIMENSIONS:
        yield from (_csv_line(dimension, line) for line in report.by[dimension])
    yield from ({"section": "day", "key": line.key, "cost_usd": _number(line.cost_usd),
                 "tokens": line.tokens} for line in report.days)
    for item in report.completed:
        change = None if item.mean_usd is None or not item.previous_mean_usd \
            else item.mean_usd - item.previous_mean_usd
        yield {"section": "completed_tasks", "key": f"analyst_{item.analyst}",
               "cost_usd": _number(item.mean_usd), "previous_cost_usd":
               _number(item.previous_mean_usd), "change_usd": _number(change),
               "count": item.tasks, "spent_usd": _number(item.cost_usd)}
    for budget_line in report.budgets:
        budget = budget_line.budget
        yield {"section": "budget", "key": _cell(budget["name"]),
               "cost_usd": _number(budget_line.period_spent_usd),
               "limit_usd": _number(budget["limit_usd"]),
               "spent_usd": _number(budget["spent_usd"]),
               "projected_usd": _number(budget["projected_usd"]), "state": budget["state"],
               "period_state": budget_line.state_in(period) or "",
               "detail": _cell(f"{budget['period']}; {scope_text(budget['scope'])}")}
    for task in report.tasks:
        yield {"section": "top_task", "key": _cell(task["task_id"]),
               "cost_usd": _number(task["cost_usd"]), "state": _cell(task["status"]),
               "detail": _cell(f"{task['task_type']}: {short(task.get('description'))}")}
    for agent in report.agents:
        yield {"section": "top_agent", "key": _cell(agent["agent_id"]),
               "cost_usd": _number(agent["cost_usd"]), "tokens": agent["tokens"]["total"],
               "state": _cell(agent["status"]),
               "detail": _cell(f"{agent['role']} {agent['model']} {agent['task_id'] or '-'}")}


def _csv_line(section: str, line: Line) -> dict[str, object]:
    change = line.change_ratio
    return {"section": section, "key": _cell(line.key), "cost_usd": _number(line.cost_usd),
            "previous_cost_usd": _number(line.previous_usd),
            "change_usd": _number(line.change_usd),
            "change_percent": "" if change is None else f"{change * 100:.2f}",
            "tokens": line.tokens}


def _number(amount: float | None) -> str:
    """Dollars to the nano-dollar the ledger counts in; empty for none."""
    if amount is None:
        return ""
    return f"{amount:.9f}".rstrip("0").rstrip(".") or "0"


def _cell(text: object) -> str:
    value = str(text)
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


# -- the command --------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    """The `report` subcommand."""
    report = commands.add_parser("report", help="a cost report of a day, week or month "
                                 "(Markdown, CSV or self-contained HTML)")
    add_connection_flags(report)
    report.add_argument("--period", choices=PERIODS, default="day",
                        help="a UTC day, an ISO week (Monday to Sunday) or a month (default day)")
    report.add_argument("--at", type=_day, default=None, metavar="DATE",
                        help="report the period holding DATE (YYYY-MM-DD, or `today` for the "
                        "period in progress); default: the last complete period")
    report.add_argument("--format", choices=("md", "csv", "html"), default="md")
    report.add_argument("--output", "-o", default=None, metavar="FILE",
                        help="write to FILE (replaced whole, never half-written); "
                        "default stdout")


def _day(text: str) -> datetime.date:
    if text == "today":
        return datetime.datetime.now(datetime.UTC).date()
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be YYYY-MM-DD or today") from None


def renderer(form: str) -> Callable[[Report], str]:
    """The function that writes a report in `form` (md, csv, html)."""
    if form == "html":
        # Imported here: report_html builds on this module's rows and formats.
        from exporter.report_html import render_html
        return render_html
    return render_csv if form == "csv" else render_markdown


def run(arguments: argparse.Namespace) -> int:
    """`report`: read, render, write; 1 on an error, with one line on stderr."""
    period = report_period(arguments.period, arguments.at, time.time())
    url = exporter_url(arguments)
    try:
        with api_client(arguments, timeout=60.0) as client:
            report = read_report(client, period, url=url)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = renderer(arguments.format)(report)
    if arguments.output is None:
        sys.stdout.write(text)
        return 0
    _write_whole(Path(arguments.output), text)
    return 0


def _write_whole(path: Path, text: str) -> None:
    """Replace `path` in one step: a mailer or a web server never sees half a report."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
