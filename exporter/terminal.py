"""`orchestrator-exporter tail` and `top`: the live stream and the fleet, in a terminal.

Both are clients of a running exporter's HTTP API (docs/api.md), found and authorised like `ctl`
(`--url`, `--token`). `tail` follows `GET /api/v1/stream` (Server-Sent Events) and prints one
line per event; after a dropped connection or a cut-off it reconnects from the last event it
printed, so nothing is missed or printed twice. `top` polls the read API (`/status`, `/agents`,
`/tasks`, `/runs`) every `--interval` seconds and redraws a full-screen view with rich.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from exporter.ctl import add_connection_flags, api_client, error_text, exporter_url
from exporter.events import validate_one

STREAM_PATH: Final = "/api/v1/stream"
# The exporter sends a heartbeat every 15 s of quiet (EXPORTER_STREAM_HEARTBEAT_SECONDS): a
# stream silent for much longer is a dead connection. Reconnecting costs nothing, it resumes.
STREAM_READ_TIMEOUT: Final = 90.0
FIRST_RETRY_DELAY: Final = 0.5
MAX_RETRY_DELAY: Final = 10.0
# Answers a retry may cure: rate limits, a busy or restarting exporter, too many subscribers.
RETRYABLE_STATUSES: Final = frozenset({429, 502, 503, 504})
MAX_SUMMARY: Final = 160
# `top --once` into a pipe or a file: wide enough that no column is cut.
PIPE_WIDTH: Final = 160
MAX_INTERVAL: Final = 3600.0
STATE_STYLES: Final = {"ok": "green", "warning": "yellow", "exceeded": "bold red"}


def add_parsers(commands: Any) -> None:
    """The `tail` and `top` subcommands."""
    tail = commands.add_parser("tail", help="follow the live event stream, one line per event")
    add_connection_flags(tail)
    tail.add_argument("--types", help="event types, comma-separated (agent.usage,log.entry)")
    tail.add_argument("--agent-id", dest="agent_id")
    tail.add_argument("--task-id", dest="task_id")
    tail.add_argument("--run-id", dest="run_id")
    tail.add_argument("--after", type=_whole(0, 2**62), default=None,
                      help="start after this seq (0: from the first stored event); "
                      "default: only new events")
    tail.add_argument("--json", action="store_true",
                      help='print {"seq": n, "event": {...}} per line')
    top = commands.add_parser("top", help="a live full-screen view of the fleet")
    add_connection_flags(top)
    top.add_argument("--interval", type=_seconds, default=2.0, help="seconds between reads")
    top.add_argument("--limit", type=_whole(1, 1000), default=10, metavar="N",
                     help="agents, tasks and runs shown (default 10)")
    top.add_argument("--once", action="store_true", help="print one frame and exit")


def run(arguments: argparse.Namespace) -> int:
    """Run `tail` or `top`; 0 when stopped with Ctrl-C, 1 on an error that retrying won't cure."""
    try:
        return run_tail(arguments) if arguments.command == "tail" else run_top(arguments)
    except KeyboardInterrupt:
        return 0


def _whole(low: int, high: int) -> Callable[[str], int]:
    def integer(text: str) -> int:  # argparse names it: "invalid integer value: 'x'"
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}")
        return value
    return integer


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_INTERVAL:g}")
    return value


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


class AnswerError(Exception):
    """The exporter answered with an error that asking again will not change (401, 422...)."""


# -- tail: Server-Sent Events -----------------------------------------------------------------


COMMENT: Final = ":"
CUTOFF: Final = "cutoff"


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str  # `message` unless named; COMMENT for a comment, its text in `data`
    data: str
    id: str | None


def sse_messages(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Messages of a Server-Sent Events stream given line by line (the WHATWG rules: fields
    `event`, `data` (joined by newlines), `id`; a blank line ends a message), and comments."""
    event, last_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseMessage(event, "\n".join(data), last_id)
            event, data = "message", []
            continue
        name, _, value = line.partition(":")
        if not name:
            yield SseMessage(COMMENT, value.strip(), None)
            continue
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            last_id = value


class Backoff:
    """Waits between reconnections: doubling from FIRST_RETRY_DELAY up to MAX_RETRY_DELAY."""

    def __init__(self) -> None:
        self.delay = FIRST_RETRY_DELAY

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, MAX_RETRY_DELAY)
        return delay

    def reset(self) -> None:
        self.delay = FIRST_RETRY_DELAY


@dataclass(slots=True)
class StreamFollower:
    """Follows `/api/v1/stream` across reconnections; `position` is the last seq handled."""

    client: httpx.Client
    filters: dict[str, str]
    position: int | None
    show: Callable[[int, str], None]
    notice: Callable[[str], None]
    connected: bool = False

    def follow(self) -> None:
        """Show events until interrupted. Raises AnswerError on a refusal, and
        httpx.TransportError when the exporter cannot be reached at all."""
        backoff = Backoff()
        while True:
            try:
                why = self._follow_once(backoff)
            except httpx.TransportError as error:
                if not self.connected:
                    raise
                why = f"connection lost ({error or type(error).__name__})"
            if why == CUTOFF:  # too slow for the exporter: it said where to resume
                self.notice(f"cut off for reading too slowly; resuming after {self.position}")
                continue
            delay = backoff.next()
            self.notice(f"{why}; reconnecting in {delay:g}s")
            time.sleep(delay)

    def _follow_once(self, backoff: Backoff) -> str:
        """One connection: shows its events, returns why it ended."""
        # The exporter resumes after `Last-Event-ID` as after `after=`: one header serves --after,
        # a cut-off's resume_after and the last event shown.
        headers = {} if self.position is None else {"Last-Event-ID": str(self.position)}
        with self.client.stream("GET", STREAM_PATH, params=self.filters,
                                headers=headers) as response:
            if response.status_code in RETRYABLE_STATUSES:
                response.read()
                return f"exporter busy ({error_text(response)})"
            if not response.is_success:
                response.read()
                raise AnswerError(error_text(response))
            self.connected = True
            for message in sse_messages(response.iter_lines()):
                if message.event == COMMENT:
                    self._starting_point(message.data)
                elif message.event == CUTOFF:
                    self.position = max(self.position or 0,
                                        int(orjson.loads(message.data)["resume_after"]))
                    return CUTOFF
                elif message.id is not None and message.id.isdigit():
                    self._handle(int(message.id), message.data)
                    backoff.reset()
        return "the exporter closed the stream"

    def _starting_point(self, comment: str) -> None:
        # The exporter's first comment, `connected at <seq>`, names where this stream starts:
        # without --after and before any event, that is where a reconnection resumes.
        words = comment.split()
        if self.position is None and words[:2] == ["connected", "at"] and words[-1].isdigit():
            self.position = int(words[-1])

    def _handle(self, seq: int, data: str) -> None:
        if self.position is not None and seq <= self.position:
            return  # the stream resumes after `position`: a repeat is never shown twice
        self.position = seq
        self.show(seq, data)


def run_tail(arguments: argparse.Namespace) -> int:
    """`tail`: print the stream's events until Ctrl-C."""
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    filters = {name: value for name in ("types", "agent_id", "task_id", "run_id")
               if (value := getattr(arguments, name)) is not None}
    show = _print_json if arguments.json else lambda seq, data: console.print(
        event_line(seq, data), soft_wrap=True)
    timeout = httpx.Timeout(10.0, read=STREAM_READ_TIMEOUT)
    with api_client(arguments, timeout) as client:
        follower = StreamFollower(client, filters, arguments.after, show,
                                  lambda note: errors.print(note, style="dim", soft_wrap=True))
        try:
            follower.follow()
        except AnswerError as error:
            return _fail(str(error))
        except httpx.TransportError as error:
            return _fail(f"cannot reach {exporter_url(arguments)}: {error}")
    return 0


def _print_json(seq: int, data: str) -> None:
    sys.stdout.write(f'{{"seq":{seq},"event":{data}}}\n')
    sys.stdout.flush()


# -- tail: one line per event -----------------------------------------------------------------


def event_line(seq: int, data: str) -> Text:
    """`seq  time  type  ids  summary` of one streamed event (its stored JSON)."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Text(f"{seq:>8}  {data[:MAX_SUMMARY]}")
    event_type, fields, when = _canonical(raw if isinstance(raw, dict) else {})
    line = Text(f"{seq:>8}  {when}  ")
    line.append(f"{event_type:<22}", style=_style(event_type, fields))
    ids = "  ".join(f"{name}={fields[f'{name}_id']}" for name in ("agent", "task", "run")
                    if fields.get(f"{name}_id"))
    line.append(f" {ids}" if ids else "", style="cyan")
    summary = SUMMARIES.get(event_type, _no_summary)(fields)
    line.append(f"  {summary[:MAX_SUMMARY]}" if summary else "")
    return line


def _canonical(raw: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """Type, fields and time as the exporter reads the stored event (aliases and camelCase
    folded), or as it stands when it no longer validates."""
    try:
        event = validate_one(raw, time.time())
    except ValueError:
        return str(raw.get("type", "?")), raw, _clock(None)
    stamped = raw.get("timestamp") is not None  # else validation stamped it with now
    return event.type, event.fields, _clock(event.timestamp if stamped else None)


def _clock(seconds: float | None) -> str:
    return "--------------" if seconds is None else time.strftime(
        "%m-%d %H:%M:%S", time.localtime(seconds))


def _style(event_type: str, fields: dict[str, Any]) -> str:
    if event_type.endswith(".failed") or fields.get("outcome") == "error" \
            or fields.get("level") in ("error", "critical"):
        return "red"
    if event_type.endswith(".cancelled") or fields.get("level") == "warning":
        return "yellow"
    return "green" if event_type.endswith(".completed") else "bold"


def _usage(fields: dict[str, Any]) -> str:
    tokens = [f"{label} {fields[name]:,}" for label, name in (
        ("in", "input_tokens"), ("out", "output_tokens"), ("cache read", "cache_read_tokens"),
        ("cache write", "cache_creation_tokens")) if fields.get(name)]
    if fields.get("cost_usd") is not None:
        tokens.append(usd(fields["cost_usd"]))
    if fields.get("context_tokens"):
        tokens.append(f"context {fields['context_tokens']:,}")
    return ("totals " if fields.get("totals") else "") + ", ".join(tokens)


def _tool_call(fields: dict[str, Any]) -> str:
    parts = [str(fields.get("tool")), str(fields.get("outcome"))]
    if fields.get("error_type"):
        parts.append(f"({fields['error_type']})")
    if fields.get("duration_seconds") is not None:
        parts.append(f"{fields['duration_seconds']:g}s")
    return " ".join(parts)


def _log(fields: dict[str, Any]) -> str:
    message = str(fields.get("message", "")).strip().splitlines() or [""]
    return f"{str(fields.get('level', '')).upper()} {message[0]}"


def _failure(fields: dict[str, Any]) -> str:
    return " ".join(str(fields[name]) for name in ("workflow", "step", "error_type", "error")
                    if fields.get(name))


def _named(*names: str) -> Callable[[dict[str, Any]], str]:
    return lambda fields: " ".join(str(fields[name]) for name in names if fields.get(name))


def _no_summary(fields: dict[str, Any]) -> str:
    return ""


SUMMARIES: Final[dict[str, Callable[[dict[str, Any]], str]]] = {
    "agent.created": _named("role", "model"),
    "agent.status_changed": _named("status"),
    "agent.usage": _usage,
    "agent.tool_call": _tool_call,
    "log.entry": _log,
    "task.submitted": _named("task_type", "complexity"),
    "task.failed": _failure,
    "workflow.started": _named("workflow"),
    "workflow.completed": _named("workflow"),
    "workflow.cancelled": _failure,
    "workflow.failed": _failure,
    "step.started": _named("step", "step_id"),
    "step.completed": _named("step", "step_id"),
    "step.failed": _failure,
    "event.ignored": _named("event_type"),
}


# -- top ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fleet:
    """One reading of the read API: what a frame of `top` shows."""

    status: dict[str, Any]
    agents: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    read_at: float


def read_fleet(client: httpx.Client, limit: int) -> Fleet:
    """Status, the costliest live agents, the newest tasks and runs. Raises AnswerError or
    httpx.HTTPError."""
    return Fleet(status=_get(client, "/api/v1/status", {}),
                 agents=_get(client, "/api/v1/agents", {"live": "true", "sort": "-cost",
                                                        "limit": limit})["items"],
                 tasks=_get(client, "/api/v1/tasks", {"sort": "-submitted",
                                                      "limit": limit})["items"],
                 runs=_get(client, "/api/v1/runs", {"sort": "-started", "limit": limit})["items"],
                 read_at=time.time())


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> Any:
    response = client.get(path, params=params)
    if not response.is_success:
        raise AnswerError(error_text(response))
    return response.json()


def run_top(arguments: argparse.Namespace) -> int:
    """`top`: one frame with --once, else redraw every --interval seconds until Ctrl-C."""
    url = exporter_url(arguments)
    with api_client(arguments, timeout=10.0) as client:
        try:
            fleet = read_fleet(client, arguments.limit)
        except AnswerError as error:
            return _fail(str(error))
        except httpx.HTTPError as error:
            return _fail(f"cannot reach {url}: {error}")
        if arguments.once:
            console = Console(highlight=False, width=None if _sized() else PIPE_WIDTH)
            console.print(fleet_view(fleet, url))
            return 0
        return _top_live(client, arguments, fleet)


def _sized() -> bool:
    return sys.stdout.isatty() or "COLUMNS" in os.environ


def _top_live(client: httpx.Client, arguments: argparse.Namespace, fleet: Fleet) -> int:
    url, problem = exporter_url(arguments), None
    with Live(console=Console(highlight=False), screen=True, auto_refresh=False) as live:
        while True:
            footer = _footer(fleet, problem, arguments.interval)
            live.update(fleet_view(fleet, url, footer), refresh=True)
            time.sleep(arguments.interval)
            try:
                fleet, problem = read_fleet(client, arguments.limit), None
            except AnswerError as error:
                problem = str(error)
            except httpx.HTTPError as error:
                problem = f"cannot reach {url}: {error or type(error).__name__}"


def _footer(fleet: Fleet, problem: str | None, interval: float) -> Text:
    if problem is None:
        return Text(f"every {interval:g}s · Ctrl-C quits", style="dim")
    return Text(f"error: {problem} · retrying every {interval:g}s · showing "
                f"{_time_of_day(fleet.read_at)}", style="bold red")


def fleet_view(fleet: Fleet, url: str, footer: Text | None = None) -> RenderableType:
    """The frame: summary and spend lines, budgets, agents, then tasks beside runs."""
    status = fleet.status
    below = Table.grid(padding=(0, 4))
    below.add_row(_tasks_table(fleet.tasks), _runs_table(fleet.runs))
    parts: list[RenderableType] = [
        Text.assemble(("orchestrator-exporter top", "bold"), f"  {url}  ",
                      (f"read at {_time_of_day(fleet.read_at)}", "dim")),
        _summary_line(status), _spend_line(status["spend_usd"]),
        _budgets_table(status["budgets"]), _agents_table(fleet.agents), below]
    return Group(*parts, *([footer] if footer is not None else []))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def _summary_line(status: dict[str, Any]) -> Text:
    agents, tasks = status["agents"], status["tasks_in_flight"]
    # `events_stored` is the name exporters before `events_accepted` gave this count.
    events = status.get("events_accepted", status.get("events_stored"))
    return Text(f"agents {agents['live']} live ({_counts(agents['by_status'])}) · roles "
                f"{_counts(agents['live_by_role']) or '-'} · tasks in flight {tasks['total']} · "
                f"active runs {status['active_runs']}"
                + ("" if events is None else f" · events {events:,}"))


def _spend_line(spend: dict[str, float]) -> Text:
    return Text.assemble("spend ", ("today ", "dim"), (usd(spend["today"]), "bold"),
                         ("  this week ", "dim"), (usd(spend["this_week"]), "bold"),
                         ("  this month ", "dim"), (usd(spend["this_month"]), "bold"))


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None,
                  header_style="dim", pad_edge=False, padding=(0, 2))
    for column in columns:
        numeric = column in ("cost", "spent", "limit", "used", "projected", "tokens", "context",
                             "duration")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True,
                         overflow="ellipsis")
    return table


def _budgets_table(budgets: list[dict[str, Any]]) -> RenderableType:
    if not budgets:
        return Text("budgets: none", style="dim")
    table = _table("budgets", "budget", "period", "scope", "spent", "limit", "used",
                   "projected", "state", "on exceed")
    for budget in budgets:
        scope = ", ".join(f"{key}={value}" for key, value in budget["scope"].items())
        used = budget["spent_usd"] / budget["limit_usd"] if budget["limit_usd"] else 0.0
        table.add_row(budget["name"], budget["period"], scope or "fleet",
                      usd(budget["spent_usd"]), usd(budget["limit_usd"]), f"{used:.0%}",
                      usd(budget["projected_usd"]),
                      Text(budget["state"], style=STATE_STYLES.get(budget["state"], "")),
                      budget["on_exceed"])
    return table


def _agents_table(agents: list[dict[str, Any]]) -> Table:
    table = _table("agents (live, costliest first)", "agent", "role", "status", "model", "task",
                   "cost", "tokens", "context")
    for agent in agents:
        fill = agent["context_fill"]
        table.add_row(agent["agent_id"], agent["role"], agent["status"], agent["model"],
                      agent["task_id"] or "-", usd(agent["cost_usd"]),
                      f"{agent['tokens']['total']:,}", "-" if fill is None else f"{fill:.0%}")
    return table


def _tasks_table(tasks: list[dict[str, Any]]) -> Table:
    table = _table("tasks (newest first)", "task", "type", "status", "cost", "submitted",
                   "duration")
    for task in tasks:
        table.add_row(task["task_id"], task["task_type"], task["status"], usd(task["cost_usd"]),
                      _time_of_day(task["submitted_at"]), _duration(task["duration_seconds"]))
    return table


def _runs_table(runs: list[dict[str, Any]]) -> Table:
    table = _table("runs (newest first)", "run", "workflow", "status", "started", "duration")
    for run in runs:
        table.add_row(run["run_id"], run["workflow"], run["status"],
                      _time_of_day(run["started_at"]), _duration(run["duration_seconds"]))
    return table


def usd(amount: float) -> str:
    """Dollars: cents from one dollar up, four decimals below (an agent's turn costs cents)."""
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


def _time_of_day(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%H:%M:%S", time.localtime(seconds))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
