"""Simulated Claude Code sessions for the demo, reaching the exporter as real ones do.

Each session is one Claude Code process with telemetry and hooks configured as
docs/integrations.md shows: its counters (`claude_code.cost.usage`, `.token.usage`,
`.session.count`, `.lines_of_code.count`, `.commit.count`, `.pull_request.count`,
`.active_time.total`, `.code_edit_tool.decision`, delta temporality, JavaScript doubles) and its
events (`claude_code.user_prompt`, `.api_request`, `.api_error`, `.tool_result`, `.tool_decision`,
every attribute a string) go as OTLP/HTTP protobuf to `/v1/metrics` and `/v1/logs`, with the
role and source as resource attributes; its SessionStart, UserPromptSubmit, Stop and SessionEnd
hooks go to `/api/v1/hooks/claude-code` with the same role and source in headers. Tool calls
come from the `tool_result` events alone (no Pre/PostToolUse hooks), so none counts twice.

`ClaudeCodeSessions` is a seeded simulation on the caller's clock (no sleeping, no network):
SESSIONS sessions at a time, each of a few dozen turns, replaced by a new one when it ends, so
the per-agent series stay bounded. `send_sessions` posts what it makes until a stop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import httpx
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from exporter.pricing import NANO_PER_USD, PriceTable, load_price_table

logger = logging.getLogger(__name__)

SESSIONS: Final = 3
# Claude Code exports metrics every 60 s and events every 5 s: the demo's sessions do it faster,
# so that a fresh demo's Claude Code panels have data within a minute.
METRICS_EVERY: Final = 5.0
LOGS_EVERY: Final = 2.0
TURNS: Final = (20, 40)
COMPACT_ABOVE: Final = 60_000
VERSION: Final = "2.1.162"
HOOKS_PATH: Final = "/api/v1/hooks/claude-code"
# Per slot: the role its sessions set in OTEL_RESOURCE_ATTRIBUTES (None: they set none and get
# EXPORTER_CLAUDE_CODE_ROLE), their model and their working directory.
_SLOTS: Final = (("BUILDER", "claude-sonnet-4-5-20250929", "/home/dev/shop"),
                 ("REVIEWER", "claude-opus-4-5-20251101", "/home/dev/billing"),
                 (None, "claude-haiku-4-5-20251001", "/home/dev/docs"))
_TOOLS: Final = (("Edit", 6), ("Read", 4), ("Bash", 3), ("Write", 2), ("Grep", 2))
_EDIT_TOOLS: Final = frozenset({"Edit", "Write"})
_LANGUAGES: Final = ("Python", "TypeScript", "Markdown")
_PROMPTS: Final = ("Add a --dry-run flag to the deploy script", "Why does this test fail?",
                   "Refactor the pricing module", "Write a test for the retry path",
                   "Review the last commit", "Fix the flaky integration test")
# What every point and record of a process carries besides its own attributes.
_USER: Final = {"user.id": "5f0e" * 16, "organization.id": "org-demo",
                "user.account_uuid": "acct-demo", "terminal.type": "vscode"}
_DELTA: Final = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
_UNITS: Final = {"claude_code.cost.usage": "USD", "claude_code.token.usage": "tokens",
                 "claude_code.active_time.total": "s"}

Attributes = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request of a session to the exporter: an OTLP export or a hook."""

    path: str
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Session:
    slot: int
    session_id: str
    role: str | None
    model: str
    cwd: str
    turns_left: int
    started: float
    turn: int = 0
    context: int = 0
    ended: bool = False
    # Increases since the last metrics export, by metric and attributes (delta temporality).
    points: dict[tuple[str, Attributes], float] = field(default_factory=dict)
    records: list[LogRecord] = field(default_factory=list)
    exported: float = 0.0


class ClaudeCodeSessions:
    """`step(now)` returns the requests the sessions made since the last call."""

    def __init__(self, *, seed: int, start: float, source: str = "demo",
                 sessions: int = SESSIONS) -> None:
        self.source = source
        self._random = random.Random(f"claude-code/{seed}/{start!r}")
        self._prices: PriceTable = load_price_table()
        self._queue: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        self._sequence = itertools.count(1)
        self._now = start
        self._out: list[Delivery] = []
        self._live: dict[int, _Session] = {}
        self._stopped = False
        for slot in range(min(sessions, len(_SLOTS))):
            self._at(1.0 + 2.0 * slot, partial(self._begin, slot))

    def step(self, now: float) -> list[Delivery]:
        """The requests up to `now`, in time order."""
        while self._queue and self._queue[0][0] <= now and not self._stopped:
            self._now, _, action = heapq.heappop(self._queue)
            action()
        self._now = max(self._now, now)
        out, self._out = self._out, []
        return out

    def shutdown(self, now: float) -> list[Delivery]:
        """What is due, then every live session exports what it has and ends; nothing after."""
        out = self.step(now)
        for session in list(self._live.values()):
            self._end(session, replace=False)
        self._stopped = True
        self._queue.clear()
        out.extend(self._out)
        self._out = []
        return out

    @property
    def live_sessions(self) -> int:
        return len(self._live)

    def _at(self, delay: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._queue, (self._now + delay, next(self._order), action))

    # A session's life: start, turns of prompts, requests and tool calls, end.

    def _begin(self, slot: int) -> None:
        role, model, cwd = _SLOTS[slot]
        session = _Session(slot, str(uuid.UUID(int=self._random.getrandbits(128), version=4)),
                           role, model, cwd, self._random.randint(*TURNS), self._now,
                           exported=self._now)
        self._live[slot] = session
        self._hook(session, "SessionStart", source="startup", model=model)
        self._add(session, "claude_code.session.count", 1)
        self._at(self._random.uniform(1, 3), lambda: self._prompt(session))
        self._at(LOGS_EVERY, lambda: self._flush(session))

    def _prompt(self, session: _Session) -> None:
        if session.ended:
            return
        session.turn += 1
        prompt = self._random.choice(_PROMPTS)
        self._hook(session, "UserPromptSubmit", permission_mode="default", prompt=prompt)
        self._event(session, "user_prompt", prompt_length=str(len(prompt)))
        self._add(session, "claude_code.active_time.total", self._random.uniform(3, 20),
                  type="user")
        self._at(self._random.uniform(1, 3), lambda: self._request(
            session, self._random.randint(3, 6)))

    def _request(self, session: _Session, remaining: int) -> None:
        """One API request of the turn; a tool call follows it unless it is the last."""
        if session.ended:
            return
        if self._random.random() < 0.03:  # overloaded once, then the retry succeeds
            self._event(session, "api_error", model=session.model, error="Overloaded",
                        status_code="529", attempt="1", duration_ms="1200")
        seconds = self._random.uniform(1.5, 6.0)
        self._usage(session, seconds)
        self._add(session, "claude_code.active_time.total", seconds, type="cli")
        if remaining > 1:
            self._at(seconds, lambda: self._tool(session, remaining - 1))
        else:
            self._at(seconds, lambda: self._end_turn(session))

    def _usage(self, session: _Session, seconds: float) -> None:
        uncached = self._random.randint(50, 800)
        output = self._random.randint(150, 2500)
        creation = self._random.randint(1000, 6000) + (12_000 if session.context == 0 else 0)
        cached = session.context
        session.context += creation + uncached + output
        # Compacted early: a metrics export sums a few requests, and the price table's
        # long-context tier (over 200k prompt tokens) must not apply to the sum.
        if session.context > COMPACT_ABOVE:
            session.context = COMPACT_ABOVE // 3
        price = self._prices.lookup(session.model)
        cost = price.cost_nano(uncached, output, cached, creation) / NANO_PER_USD if price \
            else 0.0
        self._add(session, "claude_code.cost.usage", cost, model=session.model)
        for kind, count in (("input", uncached), ("output", output), ("cacheRead", cached),
                            ("cacheCreation", creation)):
            if count:
                self._add(session, "claude_code.token.usage", count, model=session.model,
                          type=kind)
        self._event(session, "api_request", model=session.model, cost_usd=f"{cost:.6f}",
                    duration_ms=str(round(seconds * 1000)), input_tokens=str(uncached),
                    output_tokens=str(output), cache_read_tokens=str(cached),
                    cache_creation_tokens=str(creation))

    def _tool(self, session: _Session, remaining: int) -> None:
        if session.ended:
            return
        tool = self._random.choices([name for name, _ in _TOOLS],
                                    [weight for _, weight in _TOOLS])[0]
        seconds = self._random.uniform(0.05, 4.0)
        accepted = True
        if tool in _EDIT_TOOLS:
            accepted = self._random.random() < 0.9
            decision = "accept" if accepted else "reject"
            self._event(session, "tool_decision", tool_name=tool, decision=decision,
                        source="config" if accepted else "user_reject")
            self._add(session, "claude_code.code_edit_tool.decision", 1, decision=decision,
                      tool_name=tool, source="config", language=self._random.choice(_LANGUAGES))
            if accepted:
                self._add(session, "claude_code.lines_of_code.count",
                          self._random.randint(1, 60), type="added")
                self._add(session, "claude_code.lines_of_code.count",
                          self._random.randint(0, 25), type="removed")
        if accepted:
            self._event(session, "tool_result", tool_name=tool, success="true",
                        duration_ms=str(round(seconds * 1000)))
        self._at(seconds, lambda: self._request(session, remaining))

    def _end_turn(self, session: _Session) -> None:
        """Every second turn ends with a commit; every third from the first opens a pull
        request too (a fresh demo has one within a minute)."""
        if session.ended:
            return
        pull_request = session.turn % 3 == 1
        if session.turn % 2 == 1 or pull_request:
            self._add(session, "claude_code.commit.count", 1)
        if pull_request:
            self._add(session, "claude_code.pull_request.count", 1)
        self._hook(session, "Stop", permission_mode="default", stop_hook_active=False)
        session.turns_left -= 1
        if session.turns_left > 0:
            self._at(self._random.uniform(3, 8), lambda: self._prompt(session))
        else:
            self._end(session, replace=True)

    def _end(self, session: _Session, *, replace: bool) -> None:
        """Its last exports, then SessionEnd; a new session takes the slot a little later."""
        self._export_logs(session)
        self._export_metrics(session)
        self._hook(session, "SessionEnd", reason="prompt_input_exit")
        session.ended = True
        del self._live[session.slot]
        if replace:
            self._at(self._random.uniform(5, 15), lambda: self._begin(session.slot))

    # Telemetry as Claude Code's SDK batches it.

    def _add(self, session: _Session, name: str, value: float, **attributes: str) -> None:
        key = (name, tuple(sorted(attributes.items())))
        session.points[key] = session.points.get(key, 0.0) + float(value)

    def _event(self, session: _Session, name: str, **attributes: str) -> None:
        values: dict[str, str | int] = {
            **_USER, "session.id": session.session_id, "event.name": name,
            "event.timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self._now)),
            "event.sequence": next(self._sequence), **attributes}
        nanos = int(self._now * 1e9)
        session.records.append(LogRecord(
            time_unix_nano=nanos, observed_time_unix_nano=nanos,
            body=AnyValue(string_value=f"claude_code.{name}"), attributes=_pairs(values)))

    def _flush(self, session: _Session) -> None:
        if session.ended:
            return
        self._export_logs(session)
        if self._now - session.exported >= METRICS_EVERY:
            self._export_metrics(session)
        self._at(LOGS_EVERY, lambda: self._flush(session))

    def _export_metrics(self, session: _Session) -> None:
        if not session.points:
            return
        start, end = int(session.exported * 1e9), int(self._now * 1e9)
        metrics: dict[str, Metric] = {}
        for (name, attributes), value in session.points.items():
            metric = metrics.setdefault(name, Metric(
                name=name, unit=_UNITS.get(name, ""),
                sum=Sum(aggregation_temporality=_DELTA, is_monotonic=True)))
            metric.sum.data_points.append(NumberDataPoint(
                start_time_unix_nano=start, time_unix_nano=end, as_double=value,
                attributes=_pairs({**_USER, "session.id": session.session_id,
                                   **dict(attributes)})))
        request = ExportMetricsServiceRequest(resource_metrics=[ResourceMetrics(
            resource=self._resource(session), scope_metrics=[ScopeMetrics(
                scope=InstrumentationScope(name="com.anthropic.claude_code", version=VERSION),
                metrics=list(metrics.values()))])])
        session.points, session.exported = {}, self._now
        self._out.append(Delivery("/v1/metrics", request.SerializeToString(),
                                  "application/x-protobuf"))

    def _export_logs(self, session: _Session) -> None:
        if not session.records:
            return
        request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
            resource=self._resource(session), scope_logs=[ScopeLogs(
                scope=InstrumentationScope(name="com.anthropic.claude_code.events",
                                           version=VERSION),
                log_records=session.records)])])
        session.records = []
        self._out.append(Delivery("/v1/logs", request.SerializeToString(),
                                  "application/x-protobuf"))

    def _resource(self, session: _Session) -> Resource:
        attributes = {"service.name": "claude-code", "service.version": VERSION,
                      "orchestrator.source": self.source}
        if session.role is not None:
            attributes["orchestrator.role"] = session.role
        return Resource(attributes=_pairs(attributes))

    def _hook(self, session: _Session, event: str, **fields: object) -> None:
        """A command hook's input, posted as the ready settings.json snippet does."""
        payload = {"session_id": session.session_id, "cwd": session.cwd,
                   "transcript_path": f"/home/dev/.claude/projects/"
                                      f"{session.cwd.replace('/', '-')}/"
                                      f"{session.session_id}.jsonl",
                   "hook_event_name": event, **fields}
        headers = [("X-Orchestrator-Source", self.source)]
        if session.role is not None:
            headers.append(("X-Orchestrator-Role", session.role))
        self._out.append(Delivery(HOOKS_PATH, orjson.dumps(payload), "application/json",
                                  tuple(headers)))


def _pairs(values: Mapping[str, str | int]) -> list[KeyValue]:
    return [KeyValue(key=key, value=AnyValue(int_value=value) if isinstance(value, int)
                     else AnyValue(string_value=value)) for key, value in values.items()]


def send_sessions(url: str, token: str, *, seed: int, stop: threading.Event,
                  verify: bool = True, tick_seconds: float = 1.0,
                  clock: Callable[[], float] = time.time) -> None:
    """Post the sessions' requests to the exporter at `url` until `stop` is set, then their
    end. A request the exporter cannot take yet (not listening, busy) is tried again; one it
    refuses (a wrong token) stops the sessions, logged."""
    sessions = ClaudeCodeSessions(seed=seed, start=clock())
    with httpx.Client(base_url=url, timeout=10.0, verify=verify,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            if not _deliver(client, sessions.step(clock()), stop) and not stop.is_set():
                return  # refused: ending the sessions would be refused too
            stop.wait(tick_seconds)
        _deliver(client, sessions.shutdown(clock()), None)


def _deliver(client: httpx.Client, deliveries: list[Delivery],
             stop: threading.Event | None) -> bool:
    """Each request in turn; False when one was refused or could not be sent before the stop
    (without `stop`, each is tried once)."""
    for delivery in deliveries:
        while True:
            try:
                answer = client.post(delivery.path, content=delivery.body, headers={
                    "Content-Type": delivery.content_type, **dict(delivery.headers)})
            except httpx.TransportError as error:
                problem = str(error) or type(error).__name__
            else:
                if answer.is_success:
                    break
                if answer.status_code not in (429, 503):
                    logger.error("demo Claude Code sessions stopped: %s answered %d: %s",
                                 delivery.path, answer.status_code, answer.text[:200])
                    return False
                problem = f"{answer.status_code}"
            if stop is None or stop.wait(0.5):
                logger.warning("demo Claude Code request to %s not delivered: %s",
                               delivery.path, problem)
                return False
    return True
