"""What every receiver is, and the unit conversions the real sources need."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, Final

import orjson

Raw = Mapping[str, Any]
Canonical = dict[str, Any]

# The contract's longest free text (events.MAX_TEXT_LENGTH is this).
MAX_TEXT: Final = 16_384
# Anything above this many Unix seconds is taken as milliseconds (it is the year 5138).
EPOCH_MILLISECONDS_ABOVE: Final = 1e11
_NOT_IN_NAME: Final = re.compile(r"[^A-Za-z0-9 _\-.:/@+#]")
_DOLLARS: Final = re.compile(r"\s*\$?\s*(-?[0-9]+(?:\.[0-9]+)?)\s*")


class ForeignEventError(ValueError):
    """A recognised event that cannot be translated: which field, and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Receiver:
    """One source's shapes: the types it claims, how it recognises them, how it translates.

    `keyed` tells whether an event without an id gets one derived from its content: safe where
    the same content can only mean the same fact (a snapshot, or an event with its own time).
    """

    name: str
    types: frozenset[str]
    recognises: Callable[[Raw], bool]
    translate: Callable[[Raw], list[Canonical]]
    keyed: Callable[[Raw], bool]
    # An event of a type it does not list but of its form: translated to `event.ignored`.
    recognises_unknown: Callable[[Raw], bool] = lambda raw: False


def timestamp(value: object, zone: tzinfo = UTC) -> object:
    """Epoch milliseconds or seconds, or ISO 8601 with or without an offset (`zone` then), as
    Unix seconds; anything else is passed on for the contract to judge."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value / 1000 if value > EPOCH_MILLISECONDS_ABOVE else value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return parsed.timestamp()
    return value


def dollars(value: object, field: str) -> float | None:
    """USD from a number, a numeric string, or a formatted one such as "$0.0973"."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        match = _DOLLARS.fullmatch(value)
        if match is not None:
            return float(match.group(1))
    raise ForeignEventError(field, "must be an amount in dollars (a number or \"$0.0973\")")


def text(value: object) -> str | None:
    """Free text of a source, cut to what the contract keeps: a source's long error message
    (a traceback, say) must not cost its event."""
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value))[:MAX_TEXT]


def error_parts(value: object) -> dict[str, Any]:
    """`error` and `error_type` from a message or an `{name, message}` (or `{code}`) object."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        parts: dict[str, Any] = present(error=text(value.get("message")))
        kind = value.get("name") or value.get("code")
        if isinstance(kind, str) and kind:
            parts["error_type"] = kind
        return parts
    return {"error": text(value)}


def present(**fields: Any) -> Canonical:
    """The fields that have a value: an absent optional field stays absent."""
    return {name: value for name, value in fields.items() if value is not None}


def with_data(raw: Raw) -> dict[str, Any]:
    """The fields of a nested `data` object beside the top-level ones (top level wins)."""
    data = raw.get("data")
    return {**data, **raw} if isinstance(data, Mapping) else dict(raw)


def json_object(line: bytes) -> dict[str, Any] | None:
    """A line of a JSON-lines file as an object; None when it is not one (a cut-off write)."""
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def label_name(value: str) -> str:
    """A source's word made a valid name (a label value): other characters become `_`."""
    return _NOT_IN_NAME.sub("_", value)[:128]


def file_path_of(tool_input: object) -> str | None:
    """The file a Read, Edit, Write or notebook call names in its input."""
    if not isinstance(tool_input, Mapping):
        return None
    path = tool_input.get("file_path", tool_input.get("notebook_path"))
    return path if isinstance(path, str) and 0 < len(path) <= 4_096 and path.isprintable() \
        else None


def ignored(raw: Raw) -> list[Canonical]:
    """A known source's event that carries nothing to count: stored and counted as ignored
    (its type made a valid label value, so that no such event is ever refused)."""
    event_type = raw.get("type")
    name = label_name(event_type) if isinstance(event_type, str) else ""
    return [{"type": "event.ignored", "event_type": name or "unknown"}]
