"""Claude Code's OpenTelemetry metrics and events, translated into canonical events.

Claude Code (`CLAUDE_CODE_ENABLE_TELEMETRY=1`) exports counters named `claude_code.*` whose data
points carry `session.id`, and log records whose body is `claude_code.<event>` (the record's
`event.name` attribute is the bare `<event>`; every value in them is a string). Each session is an
agent: its first signal creates it, with the role, task and source the user set as resource
attributes (`OTEL_RESOURCE_ATTRIBUTES`). docs/integrations.md states the mapping and the rule
that counts cost and tokens once.

Ids are derived from the content, so a resent export request is a duplicate; cumulative
counters become increases through `cumulative`.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Metric,
    NumberDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from exporter.events import (
    EARLIEST_TIMESTAMP,
    MAX_CLOCK_SKEW_SECONDS,
    MAX_NAME_LENGTH,
    MAX_SECONDS,
)
from exporter.otlp.cumulative import CumulativeCounters, Point, Reservation

VIA: Final = "claude_code_otlp"
PREFIX: Final = "claude_code."
# Records of Claude Code without the prefix in their name are known by their scope or service.
SCOPE_PREFIX: Final = "com.anthropic.claude_code"
SERVICE_NAME: Final = "claude-code"
USAGE_FROM: Final = ("metrics", "events")
_TOKEN_FIELDS: Final = {"input": "input_tokens", "output": "output_tokens",
                        "cacheRead": "cache_read_tokens", "cacheCreation": "cache_creation_tokens"}
_ACTIVITY: Final = {"claude_code.commit.count": "commits",
                    "claude_code.pull_request.count": "pull_requests"}
_NOT_IN_NAME: Final = re.compile(r"[^A-Za-z0-9 _\-.:/@+#]")
# Sessions whose agent.created this process sent (a resend of it is a harmless duplicate).
MAX_KNOWN_SESSIONS: Final = 100_000
MAX_MESSAGE: Final = 2_000

Attributes = dict[str, object]
SessionKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a session is when its resource attributes do not say (EXPORTER_OTLP_*, and
    EXPORTER_CLAUDE_CODE_ROLE for its role)."""

    source: str
    role: str
    task_id: str | None = None
    # Which signal counts cost and tokens: the cost and token metrics, or api_request events.
    usage_from: str = "metrics"


@dataclass(frozen=True, slots=True)
class Identity:
    source: str
    role: str
    task_id: str | None


@dataclass(slots=True)
class Translation:
    """The canonical events of one export request, and what to do once they are stored."""

    events: list[dict[str, Any]]
    # Data points or records that carried nothing of Claude Code's to count.
    unused: int
    reservation: Reservation
    created: list[SessionKey]


@dataclass(slots=True)
class _Group:
    """One canonical event made of several data points, and what its id is derived from."""

    event: dict[str, Any]
    prints: list[Any] = field(default_factory=list)


def label_name(value: object) -> str:
    """A value as a name (label values, ids): characters outside names become `_`; a long
    one keeps its first characters and a hash of the whole, so two stay distinct."""
    text = value if isinstance(value, str) else str(value)
    name = _NOT_IN_NAME.sub("_", text) or "_"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.blake2b(text.encode(errors="replace"), digest_size=8).hexdigest()
    return f"{name[:MAX_NAME_LENGTH - 17]}#{digest}"


def attributes(pairs: Iterable[KeyValue]) -> Attributes:
    """Scalar attributes by key (arrays, maps and bytes are not read)."""
    values: Attributes = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        if kind in ("string_value", "bool_value", "int_value", "double_value"):
            values[pair.key] = getattr(pair.value, kind)
    return values


def _text(attrs: Mapping[str, object], key: str) -> str | None:
    value = attrs.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(attrs: Mapping[str, object], key: str) -> float | None:
    """A finite, non-negative number from a number or a numeric string ("0.0123")."""
    value = attrs.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _event_id(*parts: object) -> str:
    digest = hashlib.blake2b(orjson.dumps(parts), digest_size=16).hexdigest()
    return f"otlp:{digest}"


def _seconds(nanos: int, received: float) -> float:
    """A time in nanoseconds as Unix seconds; the receipt time when unset or implausible."""
    seconds = nanos / 1e9
    if EARLIEST_TIMESTAMP <= seconds <= received + MAX_CLOCK_SKEW_SECONDS:
        return seconds
    return received


def _session(attrs: Mapping[str, object]) -> str:
    """The agent id: `session.id`; without it (OTEL_METRICS_INCLUDE_SESSION_ID=false), the
    installation's `user.id`, so that its sessions are one agent rather than none."""
    session = _text(attrs, "session.id")
    if session is not None:
        return label_name(session)
    user = _text(attrs, "user.id")
    return label_name(f"user:{user}") if user is not None else "claude-code"


class ClaudeCodeReceiver:
    """Translates export requests; remembers cumulative series and the sessions it created."""

    def __init__(self, defaults: Defaults, *, counters: CumulativeCounters | None = None) -> None:
        self.defaults = defaults
        self.counters = counters or CumulativeCounters()
        self._known: OrderedDict[SessionKey, None] = OrderedDict()
        self._lock = threading.Lock()

    def metrics(self, request: ExportMetricsServiceRequest, received: float) -> Translation:
        """The canonical events of a metrics export request."""
        batch = _Batch(self, received)
        for resource_metrics in request.resource_metrics:
            who = self.identity(resource_metrics.resource)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    batch.metric(who, metric)
        return batch.translation()

    def logs(self, request: ExportLogsServiceRequest, received: float) -> Translation:
        """The canonical events of a logs export request."""
        batch = _Batch(self, received)
        for resource_logs in request.resource_logs:
            who = self.identity(resource_logs.resource)
            service = attributes(resource_logs.resource.attributes).get("service.name")
            for scope_logs in resource_logs.scope_logs:
                ours = service == SERVICE_NAME or scope_logs.scope.name.startswith(SCOPE_PREFIX)
                for record in scope_logs.log_records:
                    batch.record(who, record, ours)
        return batch.translation()

    def identity(self, resource: Resource) -> Identity:
        """Source, role and task from the resource attributes, or the defaults."""
        attrs = attributes(resource.attributes)
        source = _text(attrs, "orchestrator.source")
        role = _text(attrs, "orchestrator.role")
        task = _text(attrs, "orchestrator.task_id")
        return Identity(label_name(source) if source else self.defaults.source,
                        label_name(role) if role else self.defaults.role,
                        label_name(task) if task else self.defaults.task_id)

    def knows(self, session: SessionKey) -> bool:
        with self._lock:
            return session in self._known

    def committed(self, translation: Translation) -> None:
        """Its events are stored: the sessions it created need no agent.created again."""
        with self._lock:
            for session in translation.created:
                self._known[session] = None
                self._known.move_to_end(session)
            while len(self._known) > MAX_KNOWN_SESSIONS:
                self._known.popitem(last=False)

    def failed(self, translation: Translation) -> None:
        """Its events were not stored: the sender's retry must count the same increases."""
        self.counters.rollback(translation.reservation)


class _Batch:
    """The canonical events of one request in the making."""

    def __init__(self, receiver: ClaudeCodeReceiver, received: float) -> None:
        self.receiver = receiver
        self.received = received
        self.creations: dict[SessionKey, dict[str, Any]] = {}
        self.models: dict[SessionKey, tuple[float, str]] = {}
        self.groups: dict[tuple[Any, ...], _Group] = {}
        self.records: list[dict[str, Any]] = []
        self.unused = 0
        self.reservation = Reservation()

    # -- agents --------------------------------------------------------------------------------

    def seen(self, who: Identity, session: str, timestamp: float) -> SessionKey:
        """A signal of the session: the first one creates its agent."""
        key = (who.source, session)
        creation = self.creations.get(key)
        if creation is not None:
            creation["timestamp"] = min(creation["timestamp"], timestamp)
        elif not self.receiver.knows(key):
            self.creations[key] = {
                "type": "agent.created", "id": _event_id("agent", *key), "via": VIA,
                "source": who.source, "timestamp": timestamp, "agent_id": session,
                "role": who.role, **({"task_id": who.task_id} if who.task_id else {})}
        return key

    def offer_model(self, key: SessionKey, model: str | None, weight: float) -> None:
        """The agent's model is the one it spent most on in its first request: Claude Code
        calls a small model beside the main one (titles, summaries), often first."""
        if model is not None and (key not in self.models or weight > self.models[key][0]):
            self.models[key] = (weight, label_name(model))

    # -- metrics -------------------------------------------------------------------------------

    def metric(self, who: Identity, metric: Metric) -> None:
        data = metric.WhichOneof("data")
        usable = metric.name.startswith(PREFIX) and data == "sum" and \
            metric.sum.aggregation_temporality in (
                AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
                AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE)
        if not usable:
            self.unused += len(getattr(metric, data).data_points) if data else 0
            return
        cumulative = metric.sum.aggregation_temporality == \
            AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        for point in metric.sum.data_points:
            if not self.point(who, metric.name, point, cumulative):
                self.unused += 1

    def point(self, who: Identity, name: str, point: NumberDataPoint, cumulative: bool) -> bool:
        """Counts one data point; False when it carries nothing this receiver counts."""
        value = point.as_double if point.WhichOneof("value") == "as_double" \
            else float(point.as_int)
        if not math.isfinite(value) or value < 0:
            return False
        attrs = attributes(point.attributes)
        session = _session(attrs)
        key = self.seen(who, session, _seconds(point.time_unix_nano, self.received))
        self.offer_model(key, _text(attrs, "model"), 0.0)
        if name == "claude_code.session.count":
            return True  # the session is seen: that is all it says
        group = self._metric_group(key, name, attrs)
        if group is None:
            return False
        digest = hashlib.blake2b(orjson.dumps(sorted(attrs.items())), digest_size=16).digest()
        increase = value
        if cumulative:
            series = hashlib.blake2b(orjson.dumps([*key, name, digest.hex()]),
                                     digest_size=16).digest()
            increase = self.receiver.counters.advance(
                self.reservation, series,
                Point(point.start_time_unix_nano, point.time_unix_nano, value))
        if increase > 0:
            self._add(group, name, attrs, increase)
            group.event["timestamp"] = max(group.event["timestamp"],
                                           _seconds(point.time_unix_nano, self.received))
            group.prints.append([name, digest.hex(), point.start_time_unix_nano,
                                 point.time_unix_nano, value])
        return True

    def _metric_group(self, key: SessionKey, name: str,
                      attrs: Mapping[str, object]) -> _Group | None:
        """The canonical event this metric's point adds to; None for one it does not count."""
        if name in ("claude_code.cost.usage", "claude_code.token.usage"):
            if self.receiver.defaults.usage_from != "metrics":
                return None  # counted from the api_request events instead
            if name == "claude_code.token.usage" and _text(attrs, "type") not in _TOKEN_FIELDS:
                return None
            model, speed = _text(attrs, "model"), _text(attrs, "speed")
            fields = {"model": label_name(model)} if model else {}
            fields |= {"speed": "fast"} if speed == "fast" else {}
            return self._group(key, "agent.usage", ("usage", model, speed == "fast"), fields)
        if name == "claude_code.lines_of_code.count":
            return self._group(key, "agent.activity", ("code",), {}) \
                if _text(attrs, "type") in ("added", "removed") else None
        if name in _ACTIVITY:
            return self._group(key, "agent.activity", ("code",), {})
        if name == "claude_code.active_time.total":
            kind = _text(attrs, "type")
            fields = {"active_type": kind} if kind in ("user", "cli") else {}
            return self._group(key, "agent.activity", ("active", kind), fields)
        if name == "claude_code.code_edit_tool.decision":
            decision = _text(attrs, "decision")
            if decision not in ("accept", "reject"):
                return None
            tool = label_name(_text(attrs, "tool_name") or "unknown")
            return self._group(key, "agent.activity", ("edit", tool, decision),
                               {"edit_tool": tool, "edit_decision": decision})
        return None

    def _group(self, key: SessionKey, event_type: str, kind: tuple[Any, ...],
               fields: dict[str, Any]) -> _Group:
        group = self.groups.get((*key, *kind))
        if group is None:
            group = self.groups[(*key, *kind)] = _Group({
                "type": event_type, "via": VIA, "source": key[0], "timestamp": 0.0,
                "agent_id": key[1], **fields})
        return group

    def _add(self, group: _Group, name: str, attrs: Mapping[str, object],
             increase: float) -> None:
        event = group.event
        if name == "claude_code.cost.usage":
            target = "cost_usd"
            self.offer_model((event["source"], event["agent_id"]), event.get("model"),
                             event.get("cost_usd", 0.0) + increase)
        elif name == "claude_code.token.usage":
            target = _TOKEN_FIELDS[str(attrs["type"])]
        elif name == "claude_code.lines_of_code.count":
            target = "lines_added" if attrs["type"] == "added" else "lines_removed"
        elif name == "claude_code.active_time.total":
            target = "active_seconds"
        elif name == "claude_code.code_edit_tool.decision":
            target = "edit_decisions"
        else:
            target = _ACTIVITY[name]
        event[target] = event.get(target, 0) + increase

    # -- log records ---------------------------------------------------------------------------

    def record(self, who: Identity, record: LogRecord, ours: bool) -> None:
        attrs = attributes(record.attributes)
        name = _event_name(record, attrs, ours)
        if name is None:
            self.unused += 1
            return
        session = _session(attrs)
        timestamp = _seconds(record.time_unix_nano or record.observed_time_unix_nano,
                             self.received)
        key = self.seen(who, session, timestamp)
        event = self._record_event(key, name, attrs)
        content = hashlib.blake2b(record.SerializeToString(deterministic=True), digest_size=16)
        event.update(id=_event_id("record", *key, content.hexdigest()), via=VIA,
                     source=who.source, timestamp=timestamp)
        self.records.append(event)

    def _record_event(self, key: SessionKey, name: str,
                      attrs: Mapping[str, object]) -> dict[str, Any]:
        agent = {"agent_id": key[1]}
        if name == "api_request" and self.receiver.defaults.usage_from == "events":
            usage = self._request_usage(key, attrs)
            if any(counted in usage for counted in (*_TOKEN_FIELDS.values(), "cost_usd")):
                return {"type": "agent.usage", **agent, **usage}
        if name == "tool_result":
            success = _text(attrs, "success")
            duration = _number(attrs, "duration_ms")
            seconds = duration / 1000 if duration is not None else MAX_SECONDS + 1
            return {"type": "agent.tool_call", **agent,
                    "tool": label_name(_text(attrs, "tool_name") or "unknown"),
                    "outcome": {"true": "success", "false": "error"}.get(success or "", "unknown"),
                    # an implausible duration is dropped, not the request
                    **({"duration_seconds": seconds} if seconds <= MAX_SECONDS else {})}
        if name in ("api_error", "user_prompt", "tool_decision"):
            level = {"api_error": "error", "user_prompt": "info"}.get(name, "debug")
            return {"type": "log.entry", **agent, "level": level,
                    "message": _message(name, attrs)}
        return {"type": "event.ignored", "event_type": label_name(PREFIX + name)}

    def _request_usage(self, key: SessionKey, attrs: Mapping[str, object]) -> dict[str, Any]:
        usage: dict[str, Any] = {}
        for field_name in _TOKEN_FIELDS.values():
            count = _number(attrs, field_name)
            if count is not None:
                usage[field_name] = round(count)
        cost = _number(attrs, "cost_usd")
        if cost is not None:
            usage["cost_usd"] = cost
        model = _text(attrs, "model")
        if model:
            usage["model"] = label_name(model)
            self.offer_model(key, usage["model"], cost or 0.0)
        if _text(attrs, "speed") == "fast":
            usage["speed"] = "fast"
        return usage

    # -- the result ----------------------------------------------------------------------------

    def translation(self) -> Translation:
        creations = list(self.creations.values())
        for creation in creations:
            model = self.models.get((creation["source"], creation["agent_id"]))
            if model is not None:
                creation["model"] = model[1]
        derived = []
        for kind, group in self.groups.items():
            if not group.prints:
                continue
            event = _counts_as_integers(group.event)
            event["id"] = _event_id("points", *kind, sorted(group.prints))
            derived.append(event)
        return Translation([*creations, *derived, *self.records], self.unused, self.reservation,
                           list(self.creations))


def _counts_as_integers(event: dict[str, Any]) -> dict[str, Any]:
    """Token, line, commit and decision counts are whole (JavaScript counters send them as
    doubles); seconds and dollars stay as they are."""
    return {name: round(value) if isinstance(value, float) and name not in (
        "cost_usd", "active_seconds", "timestamp") else value for name, value in event.items()}


def _event_name(record: LogRecord, attrs: Mapping[str, object], ours: bool) -> str | None:
    """The bare event name (`api_request`) of a Claude Code record, else None."""
    body = record.body.string_value if record.body.WhichOneof("value") == "string_value" else ""
    named = [record.event_name, body, _text(attrs, "event.name") or ""]
    for candidate in named:
        if candidate.startswith(PREFIX):
            return candidate.removeprefix(PREFIX) or None
    if not ours:
        return None
    return next((candidate for candidate in named if candidate), None)


def _message(name: str, attrs: Mapping[str, object]) -> str:
    """A log line for an event worth reading in the agent's logs (never the prompt itself)."""
    if name == "api_error":
        status = _text(attrs, "status_code") or "no status"
        error = (_text(attrs, "error") or "")[:MAX_MESSAGE]
        return f"API error ({status}, attempt {_text(attrs, 'attempt') or '?'}): {error}"
    if name == "user_prompt":
        return f"user prompt ({_text(attrs, 'prompt_length') or '?'} characters)"
    return (f"tool decision: {_text(attrs, 'tool_name') or 'unknown'} "
            f"{_text(attrs, 'decision') or '?'} ({_text(attrs, 'source') or '?'})")[:MAX_MESSAGE]
