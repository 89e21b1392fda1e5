"""The event contract: one table of types and fields drives validation and the JSON Schema.

Both orchestrator dialects are folded into one canonical form here, so nothing downstream knows
about aliases: AgentMonitor callback names (`agent_created`), @orchestr8 envelopes (`workflowId`,
`executionId`, a nested `data` object) and camelCase field names.
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

MAX_NAME_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 16_384
MAX_COUNT: Final = 1_000_000_000
MAX_USD: Final = 1_000_000.0
MAX_SECONDS: Final = 10_000_000.0
MAX_LIST_ITEMS: Final = 1_000
# 2000-01-01T00:00:00Z: anything earlier is a unit mistake (often milliseconds or a zero value).
EARLIEST_TIMESTAMP: Final = 946_684_800.0
MAX_CLOCK_SKEW_SECONDS: Final = 86_400.0

# Names become Prometheus label values: no quotes, backslashes or control characters.
_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9 _\-.:/@+#]{1,128}")
_ID_PATTERN: Final = re.compile(r"[^\x00-\x1f\x7f]{1,128}")

AGENT_STATUSES: Final = (
    "pending", "running", "idle", "waiting", "completed", "failed", "cancelled",
)
TERMINAL_AGENT_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_creation")


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event type: its canonical name, kind, and accepted spellings."""

    name: str
    kind: str  # name | text | count | usd | seconds | bool | enum | names | object
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
RUN_ID = _f("run_id", "name", required=True, aliases=("runId", "executionId", "workflowId"))
OPTIONAL_RUN_ID = _f("run_id", "name", aliases=("runId", "executionId", "workflowId"))
ERROR = _f("error", "text", description="free-text error message")
ERROR_TYPE = _f("error_type", "name", aliases=("errorType",))
MODEL = _f("model", "name")

_STEP_FIELDS: Final = (
    RUN_ID,
    _f("step_id", "name", required=True, aliases=("stepId",)),
    _f("step", "name", aliases=("stepName", "name"), description="step name"),
    _f("agent", "name", aliases=("agentType", "agentKind"), description="agent kind running it"),
    OPTIONAL_AGENT_ID,
)

EVENT_TYPES: Final[dict[str, tuple[Field, ...]]] = {
    "agent.created": (
        AGENT_ID,
        _f("role", "name", required=True),
        MODEL,
        OPTIONAL_TASK_ID,
        _f("context_limit_tokens", "count", aliases=("contextLimitTokens",)),
    ),
    "agent.status_changed": (
        AGENT_ID,
        _f("status", "enum", required=True, choices=AGENT_STATUSES),
    ),
    "agent.usage": (
        AGENT_ID,
        MODEL,
        _f("input_tokens", "count", aliases=("inputTokens",)),
        _f("output_tokens", "count", aliases=("outputTokens",)),
        _f("cache_read_tokens", "count", aliases=("cacheReadTokens",)),
        _f("cache_creation_tokens", "count", aliases=("cacheCreationTokens",)),
        _f("cost_usd", "usd", aliases=("costUsd",)),
        _f("context_tokens", "count", aliases=("contextTokens",),
           description="current context-window fill"),
    ),
    "agent.tool_call": (
        AGENT_ID,
        _f("tool", "name", required=True),
        _f("outcome", "enum", required=True, choices=("success", "error")),
        _f("duration_seconds", "seconds", aliases=("durationSeconds",)),
        ERROR_TYPE,
    ),
    "agent.deleted": (AGENT_ID,),
    "task.submitted": (
        TASK_ID,
        _f("task_type", "name", aliases=("taskType",)),
        _f("complexity", "enum", choices=("simple", "complex")),
        _f("analyst", "bool", description="the workflow includes an ANALYST"),
        _f("mode", "enum", choices=("sequential", "parallel")),
    ),
    "task.started": (TASK_ID,),
    "task.completed": (TASK_ID,),
    "task.failed": (TASK_ID, ERROR, ERROR_TYPE),
    "task.cancelled": (TASK_ID,),
    "workflow.started": (
        RUN_ID,
        _f("workflow", "name", required=True, aliases=("workflowName", "workflowId")),
        _f("steps", "names", description="step names"),
    ),
    "workflow.completed": (RUN_ID,),
    "workflow.failed": (RUN_ID, ERROR, ERROR_TYPE),
    "workflow.cancelled": (RUN_ID,),
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
}


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
    check: Callable[[Field, object], object] = {
        "enum": _check_enum, "bool": _check_bool, "names": _check_names,
        "object": _check_object}[spec.kind]
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
    source = raw.get("source")
    return Event(
        type=event_type,
        id=_event_id(raw),
        timestamp=parse_timestamp(raw.get("timestamp"), received),
        source="default" if source is None else _check_name("source", source),
        fields=fields,
    )


def id_hash(event_id: str) -> int:
    """A signed 64-bit hash of an idempotency key: the ledger's compact key for it."""
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _seal(event: Event, raw: object) -> None:
    """What the ledger keeps of a valid event: its raw JSON and the hash of its id."""
    event.payload = orjson.dumps(raw)
    if event.id is not None:
        event.key = id_hash(event.id)


def validate_one(raw: object, received: float) -> Event:
    """Validate one event; raise ValueError naming the field and the reason."""
    try:
        event = _normalize(raw, received)
    except _InvalidFieldError as invalid:
        raise ValueError(f"{invalid.field_name or 'event'}: {invalid.reason}") from None
    _seal(event, raw)
    return event


def validate_batch(raws: list[Any], received: float) -> tuple[list[Event], list[Problem]]:
    """Validate every event; the caller refuses the batch if any problem is returned."""
    events: list[Event] = []
    problems: list[Problem] = []
    for index, raw in enumerate(raws):
        try:
            events.append(_normalize(raw, received))
        except _InvalidFieldError as invalid:
            problems.append(Problem(index, invalid.field_name, invalid.reason))
    if not problems:
        for event, raw in zip(events, raws, strict=True):
            _seal(event, raw)
    return events, problems


_SCHEMA_TYPES: Final[dict[str, dict[str, object]]] = {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9 _\\-.:/@+#]{1,128}$"},
    "text": {"type": "string", "maxLength": MAX_TEXT_LENGTH},
    "count": {"type": "integer", "minimum": 0, "maximum": MAX_COUNT},
    "usd": {"type": "number", "minimum": 0, "maximum": MAX_USD},
    "seconds": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
    "bool": {"type": "boolean"},
    "object": {"type": "object"},
}


def _field_schema(spec: Field) -> dict[str, object]:
    if spec.kind == "enum":
        schema: dict[str, object] = {"type": "string", "enum": list(spec.choices)}
    elif spec.kind == "names":
        schema = {"type": "array", "maxItems": MAX_LIST_ITEMS, "items": _SCHEMA_TYPES["name"]}
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
