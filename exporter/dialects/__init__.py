"""Receivers: the real orchestrators' own shapes, translated into canonical events.

Each module is one source, as its code really emits (docs/integrations.md): a receiver
recognises an event by its form (its `type` and the fields beside it), or by an explicit
`"dialect"` hint, and translates it into one or more canonical event dicts, which are then
validated like any other event. Translation is stateless; what needs memory (running totals,
which run a step belongs to) is done by the fleet state on the canonical events, so replaying
the ledger gives the same result. Nothing past this package knows a source's field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from exporter.dialects import orchestr8, python_dashboard, python_monitor
from exporter.dialects.base import ForeignEventError, Receiver

RECEIVERS: Final[tuple[Receiver, ...]] = (
    orchestr8.RECEIVER, python_monitor.RECEIVER, python_dashboard.RECEIVER,
)
# Receivers of the in-process integrations, the log importer and OTLP (exporter.otlp): they
# build canonical events themselves and only name themselves in `via`.
IN_PROCESS: Final = ("orchestrator_progress", "orchestrator_logs", "claude_code_otlp", "agent_sdk")
# Claude Code's hooks and transcripts, read by exporter.claude_code: they correlate what they
# read (tool call pairs, sub-agents) and so build canonical events themselves too.
CLAUDE_CODE: Final = ("claude_code_hooks", "claude_code_transcripts")
DIALECT_NAMES: Final = ("canonical", *(receiver.name for receiver in RECEIVERS), *IN_PROCESS,
                        *CLAUDE_CODE)
_BY_NAME: Final = {receiver.name: receiver for receiver in RECEIVERS}
CLAIMED_TYPES: Final = frozenset(kind for receiver in RECEIVERS for kind in receiver.types)
_BY_TYPE: Final[dict[str, tuple[Receiver, ...]]] = {}
for _receiver in RECEIVERS:
    for _type in _receiver.types:
        _BY_TYPE[_type] = (*_BY_TYPE.get(_type, ()), _receiver)

__all__ = ["CLAIMED_TYPES", "DIALECT_NAMES", "RECEIVERS", "ForeignEventError", "Receiver",
           "recognise", "recognise_unknown"]


def recognise(raw: Mapping[str, Any]) -> Receiver | None:
    """The receiver of a foreign event; None for a canonical one.

    A `dialect` hint names the receiver outright; otherwise the first receiver that claims the
    event's type and recognises its form takes it.
    """
    hint = raw.get("dialect")
    if hint is not None:
        if hint == "canonical":
            return None
        receiver = _BY_NAME.get(hint) if isinstance(hint, str) else None
        if receiver is None:
            raise ForeignEventError("dialect", "must be one of canonical, "
                                    + ", ".join(_BY_NAME))
        return receiver
    event_type = raw.get("type")
    candidates = _BY_TYPE.get(event_type) if isinstance(event_type, str) else None
    if candidates is None:
        return None
    for receiver in candidates:
        if receiver.recognises(raw):
            return receiver
    return None


def recognise_unknown(raw: Mapping[str, Any]) -> Receiver | None:
    """The receiver whose form an event of a type nobody knows has (a newer version of its
    source, say): it is stored and counted as ignored instead of refused."""
    return next((receiver for receiver in RECEIVERS if receiver.recognises_unknown(raw)), None)
