"""The event contract: one table of types and fields drives validation and the JSON Schema.

Aliases are folded into one canonical form here, so nothing downstream knows about them:
AgentMonitor callback names (`agent_created`), a nested `data` object and camelCase field names.
The real orchestrators' own shapes are translated into this form first by their receivers
(`exporter.dialects`); an event they translated names its receiver in `via`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from exporter.dialects import (
    CLAIMED_TYPES,
    DIALECT_NAMES,
    ForeignEventError,
    Receiver,
    recognise,
    recognise_unknown,
)
from exporter.dialects.base import MAX_TEXT

MAX_NAME_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = MAX_TEXT  # receivers cut a source's free text to it
MAX_COUNT: Final = 1_000_000_000
MAX_USD: Final = 1_000_000.0
MAX_SECONDS: Final = 10_000_000.0
MAX_LIST_ITEMS: Final = 1_000
MAX_PATH: Final = 4_096  # PATH_MAX on Linux
# 2000-01-01T00:00:00Z: anything earlier is a unit mistake (often milliseconds or a zero value).
EARLIEST_TIMESTAMP: Final = 946_684_800.0
MAX_CLOCK_SKEW_SECONDS: Final = 86_400.0

# Names become Prometheus label values: no quotes, backslashes or control characters.
_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9 _\-.:/@+#]{1,128}")
_ID_PATTERN: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")

AGENT_STATUSES: Final = (
    "pending", "running", "idle", "waiting", "completed", "failed", "cancelled",
)
# The one table of status words: what real sources say (Python orchestrator's AgentStatus and
# dashboard rows, task rows) -> the canonical status. Agents and tasks share it.
STATUS_ALIASES: Final = {
    **{status: status for status in AGENT_STATUSES},
    "created": "pending", "queued": "pending",
    "active": "running", "in_progress": "running", "busy": "running", "thinking": "running",
    "done": "completed", "succeeded": "completed", "success": "completed",
    "error": "failed", "errored": "failed",
    "canceled": "cancelled",
}
TERMINAL_AGENT_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_creation")
# `unknown`: the source saw the call but not its result (the Python orchestrator's progress
# callback).
TOOL_OUTCOMES: Final = ("success", "error", "unknown")
# agent.activity: who was active (Claude Code's active time), and a permission decision on an
# edit.
ACTIVE_TYPES: Final = ("user", "cli")
EDIT_DECISIONS: Final = ("accept", "reject")


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event type: its canonical name, kind, and accepted spellings."""

    name: str
    # name | role | text | path | count | usd | seconds | bool | enum | names | paths | object
    kind: str
    required: bool = False
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    description: str = ""


def _f(name: str, kind: str, *, required: bool = False, choices: tuple[str, ...] = (),
       aliases: tuple[str, ...] = (), description: str = "") -> Field:
    return Field(name, kind, required, choices, aliases, description)


AGENT_ID = _f("agent_id", "name", required=True, aliases=("agentId",))
OPTIONAL_AGENT_ID = _f("agent_id", "name", aliases=("agentId",))
TASK_ID = _f("task_id", "name", required=True, aliases=("taskId",))
OPTIONAL_TASK_ID = _f("task_id", "name", aliases=("taskId",))
# @orchestr8: executionId is the run id; workflowId is the run id only when executionId is absent.
OPTIONAL_RUN_ID = _f("run_id", "name", aliases=("runId", "executionId"))
# Without a run id, a step or the end of a run is correlated with an open run (docs/events.md).
CORRELATED_RUN_ID = _f("run_id", "name", aliases=("runId", "executionId"),
                       description="the run; without it, the open run that started this step "
                       "(steps) or the one open run of `workflow` (runs)")
RUN_WORKFLOW = _f("workflow", "name", aliases=("workflowName", "workflowId"),
                  description="the workflow, to correlate an event without run_id")
ERROR = _f("error", "text", description="free-text error message")
ERROR_TYPE = _f("error_type", "name", aliases=("errorType",))
MODEL = _f("model", "name")

_STEP_FIELDS: Final = (
    CORRELATED_RUN_ID,
    _f("step_id", "name", required=True, aliases=("stepId",)),
    _f("step", "name", aliases=("stepName", "name"), description="step name"),
    _f("agent", "name", aliases=("agentType", "agentKind"), description="agent kind running it"),
    OPTIONAL_AGENT_ID,
)

EVENT_TYPES: Final[dict[str, tuple[Field, ...]]] = {
    "agent.created": (
        AGENT_ID,
        _f("role", "role", required=True),
        MODEL,
        OPTIONAL_TASK_ID,
        _f("context_limit_tokens", "count", aliases=("contextLimitTokens",)),
    ),
    "agent.status_changed": (
        AGENT_ID,
        _f("status", "status", required=True, choices=AGENT_STATUSES),
    ),
    "agent.usage": (
        AGENT_ID,
        MODEL,
        _f("input_tokens", "count", aliases=("inputTokens",)),
        _f("output_tokens", "count", aliases=("outputTokens",)),
        _f("cache_read_tokens", "count", aliases=("cacheReadTokens",)),
        _f("cache_creation_tokens", "count", aliases=("cacheCreationTokens",)),
        _f("cache_creation_5m_tokens", "count",
           aliases=("cacheCreation5mTokens", "ephemeral_5m_input_tokens"),
           description="of the cache writes, those with the 5-minute TTL"),
        _f("cache_creation_1h_tokens", "count",
           aliases=("cacheCreation1hTokens", "ephemeral_1h_input_tokens"),
           description="of the cache writes, those with the 1-hour TTL (priced as such)"),
        _f("cost_usd", "usd", aliases=("costUsd",)),
        _f("context_tokens", "count", aliases=("contextTokens",),
           description="current context-window fill"),
        _f("totals", "bool", description="the counts and cost are the agent's running totals: "
           "only their increase over what is known of the agent counts"),
        _f("service_tier", "enum", choices=("standard", "priority", "batch"),
           aliases=("serviceTier",), description="batch: half price (Message Batches)"),
        _f("speed", "enum", choices=("standard", "fast"),
           description="fast: the model's fast-mode price"),
        _f("inference_geo", "name", aliases=("inferenceGeo",),
           description="us: the model's US-only inference multiplier"),
    ),
    "agent.tool_call": (
        AGENT_ID,
        _f("tool", "name", required=True),
        _f("outcome", "enum", required=True, choices=TOOL_OUTCOMES),
        _f("duration_seconds", "seconds", aliases=("durationSeconds",)),
        ERROR_TYPE,
        _f("file_path", "path", aliases=("filePath",),
           description="the file the call read or wrote (Read, Edit, Write...): the agent's "
           "files in the read API"),
    ),
    "agent.files": (
        AGENT_ID,
        _f("read", "paths", aliases=("files_read", "filesRead"), description="files read"),
        _f("written", "paths", aliases=("files_written", "filesWritten", "files_modified"),
           description="files written"),
    ),
    "agent.activity": (
        AGENT_ID,
        _f("lines_added", "count", description="lines of code the agent added"),
        _f("lines_removed", "count", description="lines of code the agent removed"),
        _f("commits", "count", description="git commits the agent made"),
        _f("pull_requests", "count", description="pull requests the agent opened"),
        _f("active_seconds", "seconds", description="time the session was active"),
        _f("active_type", "enum", choices=ACTIVE_TYPES,
           description="user: the user at the keyboard; cli: the agent working"),
        _f("edit_tool", "name", description="the editing tool a permission decision was on"),
        _f("edit_decision", "enum", choices=EDIT_DECISIONS),
        _f("edit_decisions", "count", description="decisions of edit_tool, edit_decision"),
    ),
    "agent.deleted": (AGENT_ID,),
    "task.submitted": (
        TASK_ID,
        _f("task_type", "name", aliases=("taskType",)),
        _f("complexity", "enum", choices=("simple", "complex")),
        _f("analyst", "bool", description="the workflow includes an ANALYST"),
        _f("mode", "enum", choices=("sequential", "parallel")),
        _f("description", "text", aliases=("prompt",),
           description="what the task asks, searchable in the read API"),
    ),
    "task.started": (TASK_ID,),
    "task.completed": (TASK_ID,),
    "task.failed": (TASK_ID, ERROR, ERROR_TYPE),
    "task.cancelled": (TASK_ID,),
    "workflow.started": (
        CORRELATED_RUN_ID,
        RUN_WORKFLOW,
        _f("steps", "names", description="step names"),
    ),
    "workflow.completed": (CORRELATED_RUN_ID, RUN_WORKFLOW),
    "workflow.failed": (CORRELATED_RUN_ID, RUN_WORKFLOW, ERROR, ERROR_TYPE),
    "workflow.cancelled": (CORRELATED_RUN_ID, RUN_WORKFLOW, ERROR),
    "step.started": _STEP_FIELDS,
    "step.completed": _STEP_FIELDS,
    "step.failed": (*_STEP_FIELDS, ERROR, ERROR_TYPE),
    "step.skipped": _STEP_FIELDS,
    "step.cancelled": _STEP_FIELDS,
    "step.retried": _STEP_FIELDS,
    "log.entry": (
        _f("level", "enum", required=True, choices=LOG_LEVELS),
        _f("message", "text", required=True),
        OPTIONAL_AGENT_ID,
        OPTIONAL_TASK_ID,
        OPTIONAL_RUN_ID,
    ),
    "metrics.update": (_f("metrics", "object", description="numeric snapshot, stored only"),),
    "event.ignored": (
        _f("event_type", "name", required=True,
           description="a recognised source's event type that carries nothing to count"),
    ),
}
# Types whose events must name the run or the workflow (the one to correlate with).
RUN_OR_WORKFLOW: Final = frozenset(
    {"workflow.started", "workflow.completed", "workflow.failed", "workflow.cancelled"})


def _type_aliases() -> dict[str, str]:
    aliases = {name: name for name in EVENT_TYPES}
    for name in EVENT_TYPES:
        aliases[name.replace(".", "_")] = name
    aliases.update({
        "status_changed": "agent.status_changed",
        "tool_call": "agent.tool_call",
        "usage": "agent.usage",
    })
    return aliases


TYPE_ALIASES: Final = _type_aliases()


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one event of a batch was refused."""

    index: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(slots=True)
class Event:
    """A validated event in canonical form, with the raw bytes kept for the ledger."""

    type: str
    id: str | None
    timestamp: float
    source: str
    fields: dict[str, Any]
    # The receiver that translated it (`via`), or "canonical".
    dialect: str = "canonical"
    payload: bytes = field(repr=False, default=b"")
    # id_hash(id): computed where the event is validated (a parse worker, for HTTP batches).
    key: int | None = field(repr=False, default=None)


class _InvalidFieldError(Exception):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field_name = field_name
        self.reason = reason


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _InvalidFieldError(name, "must be a string")
    if _NAME_PATTERN.fullmatch(value) is None:
        if len(value) > MAX_NAME_LENGTH or not value:
            raise _InvalidFieldError(name, f"must be 1 to {MAX_NAME_LENGTH} characters")
        raise _InvalidFieldError(name, "may hold only letters, digits, space and _ - . : / @ + #")
    return value


def _check_number(name: str, value: object, upper: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _InvalidFieldError(name, "must be a number")
    if not math.isfinite(value) or value < 0 or value > upper:
        raise _InvalidFieldError(name, f"must be between 0 and {upper:g}")
    return value


def _check_count(name: str, value: object) -> int:
    number = _check_number(name, value, MAX_COUNT)
    if isinstance(number, float):
        if not number.is_integer():
            raise _InvalidFieldError(name, "must be a whole number")
        return int(number)
    return number


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise _InvalidFieldError(name, "must be a string")
    if len(value) > MAX_TEXT_LENGTH:
        raise _InvalidFieldError(name, f"must be at most {MAX_TEXT_LENGTH} characters")
    return value


def _check_status(spec: Field, value: object) -> str:
    status = STATUS_ALIASES.get(value.lower()) if isinstance(value, str) else None
    if status is None:
        raise _InvalidFieldError(spec.name, "must be one of " + ", ".join(spec.choices)
                                 + " (or a word of the status table in docs/events.md)")
    return status


def _check_enum(spec: Field, value: object) -> str:
    if not isinstance(value, str) or value not in spec.choices:
        raise _InvalidFieldError(spec.name, "must be one of " + ", ".join(spec.choices))
    return value


def _check_bool(spec: Field, value: object) -> bool:
    if not isinstance(value, bool):
        raise _InvalidFieldError(spec.name, "must be true or false")
    return value


def _check_names(spec: Field, value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        raise _InvalidFieldError(spec.name, f"must be a list of at most {MAX_LIST_ITEMS} names")
    return [_check_name(spec.name, item) for item in value]


def _check_path(name: str, value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PATH:
        raise _InvalidFieldError(name, f"must be a path of 1 to {MAX_PATH} characters")
    if not value.isprintable():
        raise _InvalidFieldError(name, "must hold no control characters")
    return value


def _check_paths(spec: Field, value: object) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        raise _InvalidFieldError(spec.name, f"must be a list of at most {MAX_LIST_ITEMS} paths")
    return [_check_path(spec.name, item) for item in value]


def _check_object(spec: Field, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _InvalidFieldError(spec.name, "must be an object")
    return value


Checker = Callable[[object], object]


def _checker(spec: Field) -> Checker:
    """A checker for one field, with the common valid case tested first and cheaply."""
    name, match = spec.name, _NAME_PATTERN.fullmatch
    if spec.kind == "name":
        return lambda value: value if type(value) is str and match(value) \
            else _check_name(name, value)
    if spec.kind == "count":
        return lambda value: value if type(value) is int and 0 <= value <= MAX_COUNT \
            else _check_count(name, value)
    if spec.kind in ("usd", "seconds"):
        upper = MAX_USD if spec.kind == "usd" else MAX_SECONDS
        return lambda value: _check_number(name, value, upper)
    if spec.kind == "text":
        return lambda value: _check_text(name, value)
    if spec.kind == "path":
        return lambda value: _check_path(name, value)
    if spec.kind == "role":  # `analyst` and `ANALYST` are one role, one series
        return lambda value: value.upper() if type(value) is str and match(value) \
            else _check_name(name, value).upper()
    check: Callable[[Field, object], object] = {
        "enum": _check_enum, "status": _check_status, "bool": _check_bool,
        "names": _check_names, "paths": _check_paths, "object": _check_object}[spec.kind]
    return lambda value: check(spec, value)


CompiledField = tuple[str, tuple[str, ...], Checker, bool]
_COMPILED: Final[dict[str, tuple[CompiledField, ...]]] = {
    event_type: tuple((spec.name, spec.aliases, _checker(spec), spec.required) for spec in specs)
    for event_type, specs in EVENT_TYPES.items()
}


_TIMESTAMP_FORMAT: Final = "must be an RFC 3339 date-time or Unix seconds"


def parse_timestamp(value: object, received: float) -> float:
    """An RFC 3339 string or Unix seconds, within [2000-01-01, receipt + 1 day]."""
    if value is None:
        return received
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise _InvalidFieldError("timestamp", _TIMESTAMP_FORMAT) from None
        if parsed.tzinfo is None:
            raise _InvalidFieldError("timestamp", "needs a UTC offset (e.g. Z or +00:00)")
        seconds = parsed.timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        seconds = float(value)
        if seconds > received * 100:
            raise _InvalidFieldError("timestamp", "must be Unix seconds, not milliseconds")
    else:
        raise _InvalidFieldError("timestamp", _TIMESTAMP_FORMAT)
    if seconds < EARLIEST_TIMESTAMP or seconds > received + MAX_CLOCK_SKEW_SECONDS:
        raise _InvalidFieldError("timestamp", "must lie between 2000 and one day after receipt")
    return seconds


def _event_id(raw: dict[str, Any]) -> str | None:
    value = raw.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or _ID_PATTERN.fullmatch(value) is None:
        raise _InvalidFieldError(
            "id", f"must be a string of 1 to {MAX_NAME_LENGTH} printable characters")
    return value


def _event_type(raw: dict[str, Any]) -> str:
    value = raw.get("type")
    if value is None:
        raise _InvalidFieldError("type", "is required")
    canonical = TYPE_ALIASES.get(value) if isinstance(value, str) else None
    if canonical is None:
        raise _InvalidFieldError("type", "unknown event type; see GET /api/v1/events/schema")
    return canonical


def _flatten(raw: dict[str, Any]) -> dict[str, Any]:
    data = raw.get("data")
    if isinstance(data, dict):
        return {**data, **raw}
    return raw


def _normalize(raw: object, received: float) -> Event:
    if not isinstance(raw, dict):
        raise _InvalidFieldError("", "an event must be a JSON object")
    event_type = _event_type(raw)
    flat = _flatten(raw)
    fields: dict[str, Any] = {}
    for name, aliases, check, required in _COMPILED[event_type]:
        value = flat.get(name)
        if value is None:
            for alias in aliases:
                value = flat.get(alias)
                if value is not None:
                    break
            else:
                if required:
                    raise _InvalidFieldError(name, "is required")
                continue
        fields[name] = check(value)
    if event_type in RUN_OR_WORKFLOW and "run_id" not in fields and "workflow" not in fields:
        raise _InvalidFieldError("run_id", "is required (or workflow, to correlate with)")
    source = raw.get("source")
    via = raw.get("via")
    return Event(
        type=event_type,
        id=_event_id(raw),
        timestamp=parse_timestamp(raw.get("timestamp"), received),
        source="default" if source is None else _check_name("source", source),
        fields=fields,
        dialect="canonical" if via is None else _check_via(via),
    )


def _check_via(value: object) -> str:
    if value not in DIALECT_NAMES:
        raise _InvalidFieldError("via", "must name a receiver: " + ", ".join(DIALECT_NAMES))
    return str(value)


def id_hash(event_id: str) -> int:
    """A signed 64-bit hash of an idempotency key: the ledger's compact key for it."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def agent_key(source: str, agent_id: str) -> int:
    """A signed 64-bit hash naming an agent of a source: the ledger's index of its events.
    (Migration 0006 computes the same for events stored before it.)"""
    digest = hashlib.blake2b(f"{source}\x1f{agent_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _seal(event: Event, stored: object) -> None:
    """What the ledger keeps of a valid event: its JSON and the hash of its id."""
    event.payload = orjson.dumps(stored)
    if event.id is not None:
        event.key = id_hash(event.id)


Expanded = list[tuple[Event, dict[str, Any]]]


def _expand(raw: object, received: float) -> Expanded:
    """One raw event as canonical events, each with what the ledger stores of it: the raw
    event itself when canonical; a foreign one's translations, the first carrying the raw."""
    if not isinstance(raw, dict) or "via" in raw:
        return [(_normalize(raw, received), raw)]  # type: ignore[list-item]
    try:
        receiver = recognise(raw)
        if receiver is None and raw.get("type") not in TYPE_ALIASES:
            receiver = recognise_unknown(raw)
        translated = receiver.translate(raw) if receiver is not None else None
    except ForeignEventError as error:
        raise _InvalidFieldError(error.field, error.reason) from None
    except (KeyError, TypeError, AttributeError, ValueError):
        raise _InvalidFieldError("", "does not have the form of its source's "
                                 f"{raw.get('type')!s:.64} event") from None
    if receiver is None or translated is None:
        return [(_normalize(raw, received), raw)]
    ids = _translated_ids(raw, receiver, len(translated))
    envelope = {key: raw[key] for key in ("source",) if key in raw}
    expanded: Expanded = []
    for index, canonical in enumerate(translated):
        stored = {**canonical, **envelope, "via": receiver.name}
        if ids:
            stored["id"] = ids[index]
        if index == 0:
            stored["raw"] = raw
        expanded.append((_normalize(stored, received), stored))
    return expanded


def _translated_ids(raw: dict[str, Any], receiver: Receiver, count: int) -> list[str]:
    """The source's id, or one derived from the content where the receiver allows it, with
    `#n` for the n-th further translation: a resend repeats them all."""
    given = _event_id(raw)
    if given is not None:
        base = given
        if count > 1 and len(given) > MAX_NAME_LENGTH - 4:  # room for `#n`, still one per id
            digest = hashlib.blake2b(given.encode(), digest_size=8).hexdigest()
            base = f"{given[:100]}~{digest}"
    elif receiver.keyed(raw):
        digest = hashlib.blake2b(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS),
                                 digest_size=16).hexdigest()
        base = f"{receiver.name}:{digest}"
    else:
        return []
    return [base if index == 0 else f"{base}#{index}" for index in range(count)]


_TOKEN_FIELDS: Final = ("input_tokens", "output_tokens", "cache_read_tokens",
                         "cache_creation_tokens", "cache_creation_5m_tokens",
                         "cache_creation_1h_tokens")


def _check_token_limit(expanded: Expanded, max_tokens: int) -> None:
    for event, _ in expanded:
        if event.type != "agent.usage" or event.fields.get("totals"):
            continue
        for name in _TOKEN_FIELDS:
            if event.fields.get(name, 0) > max_tokens:
                raise _InvalidFieldError(name, f"exceeds this exporter's limit of {max_tokens} "
                                         "tokens per event (EXPORTER_MAX_EVENT_TOKENS)")


def validate_raw(raw: object, received: float) -> list[Event]:
    """Validate one event of any recognised shape; raise ValueError naming the field."""
    try:
        expanded = _expand(raw, received)
    except _InvalidFieldError as invalid:
        raise ValueError(f"{invalid.field_name or 'event'}: {invalid.reason}") from None
    for event, stored in expanded:
        _seal(event, stored)
    return [event for event, _ in expanded]


def check_raw(raw: object, received: float) -> None:
    """Raise ValueError naming the field when the event would be refused; store nothing."""
    try:
        _expand(raw, received)
    except _InvalidFieldError as invalid:
        raise ValueError(f"{invalid.field_name or 'event'}: {invalid.reason}") from None


def validate_one(raw: object, received: float) -> Event:
    """Validate one event that makes exactly one canonical event (a stored one, say)."""
    events = validate_raw(raw, received)
    if len(events) != 1:
        raise ValueError(f"event: makes {len(events)} canonical events, not one")
    return events[0]


def validate_batch(raws: list[Any], received: float, *,
                   max_tokens: int = MAX_COUNT) -> tuple[list[Event], list[Problem]]:
    """Validate every event; the caller refuses the batch if any problem is returned.
    A problem's index is the raw event's position, whatever it was translated into. A usage
    event (not running totals) with more than `max_tokens` of one kind is a problem too."""
    events: list[Event] = []
    stored: list[object] = []
    problems: list[Problem] = []
    limited = max_tokens < MAX_COUNT
    for index, raw in enumerate(raws):
        try:
            if type(raw) is dict and _plainly_canonical(raw) and not limited:
                events.append(_normalize(raw, received))  # the hot path: no receiver's type
                stored.append(raw)
                continue
            expanded = _expand(raw, received)
            if limited:
                _check_token_limit(expanded, max_tokens)
        except _InvalidFieldError as invalid:
            problems.append(Problem(index, invalid.field_name, invalid.reason))
            continue
        for event, translated in expanded:
            events.append(event)
            stored.append(translated)
    if not problems:
        for event, payload in zip(events, stored, strict=True):
            _seal(event, payload)
    return events, problems


def _plainly_canonical(raw: dict[str, Any]) -> bool:
    """A canonical type, with no dialect hint, that no receiver takes by its form."""
    event_type = raw.get("type")
    return type(event_type) is str and event_type in TYPE_ALIASES and "dialect" not in raw \
        and (event_type not in CLAIMED_TYPES or recognise(raw) is None)


_SCHEMA_TYPES: Final[dict[str, dict[str, object]]] = {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9 _\\-.:/@+#]{1,128}$"},
    "text": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
    "count": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
    "usd": {"type": "number", "minimum": 0, "maximum": MAX_USD},
    "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    "bool": {"type": "boolean"},
    "object": {"type": "object"},
    "path": {"type": "string", "minLength": 1, "maxLength": MAX_PATH},
}


def _field_schema(spec: Field) -> dict[str, object]:
    if spec.kind == "enum":
        schema: dict[str, object] = {"type": "string", "enum": list(spec.choices)}
    elif spec.kind == "status":
        schema = {"type": "string", "enum": sorted(STATUS_ALIASES),
                  "description": "folded to one of " + ", ".join(spec.choices)}
    elif spec.kind == "role":
        schema = {**_SCHEMA_TYPES["name"], "description": "folded to upper case"}
    elif spec.kind == "names":
        schema = {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": _SCHEMA_TYPES["name"]}
    elif spec.kind == "paths":
        schema = {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": _SCHEMA_TYPES["path"]}
    else:
        schema = dict(_SCHEMA_TYPES[spec.kind])
    if spec.aliases:
        schema["x-aliases"] = list(spec.aliases)
    if spec.description:
        schema["description"] = spec.description
    return schema


def _type_schema(event_type: str, specs: tuple[Field, ...]) -> dict[str, object]:
    names = sorted(alias for alias, target in TYPE_ALIASES.items() if target == event_type)
    properties: dict[str, object] = {
        "type": {"type": "string", "enum": names},
        "id": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
        "timestamp": {"type": ["string", "number"],
                      "description": "RFC 3339 date-time or Unix seconds"},
        "source": _SCHEMA_TYPES["name"],
        "dialect": {"type": "string", "enum": list(DIALECT_NAMES),
                    "description": "optional hint: the receiver that should read this event"},
        "via": {"type": "string", "enum": list(DIALECT_NAMES),
                "description": "the receiver that translated this event (stored events)"},
    }
    properties.update({spec.name: _field_schema(spec) for spec in specs})
    return {
        "title": event_type,
        "type": "object",
        "properties": properties,
        "required": ["type", *[spec.name for spec in specs if spec.required]],
    }


def json_schema() -> dict[str, object]:
    """The JSON Schema of one event (canonical field names; aliases under `x-aliases`)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "orchestrator-exporter event",
        "oneOf": [_type_schema(name, specs) for name, specs in EVENT_TYPES.items()],
    }
