"""The Python orchestrator's monitor events: `MetricsCollector.events` entries.

    {"timestamp": "2025-11-09T23:41:07.512233+00:00", "type": "agent_created",
     "data": {"agent_id": "...", "name": "Builder Agent", "role": "builder"}}

Types: `agent_created`, `agent_deleted` (`data.metrics` holds the agent's final running totals),
`status_change` (`old_status`, `new_status`, lower-case) and `error`. Timestamps are UTC ISO
with an offset. The orchestrator offers no working push for them (`register_status_callback`
stores callbacks nothing calls): `exporter.integrations.orchestrator.follow_metrics_collector`
forwards them as they are recorded.
"""

from __future__ import annotations

from typing import Any, Final

from exporter.dialects.base import (
    Canonical,
    Raw,
    Receiver,
    dollars,
    ignored,
    present,
    text,
    timestamp,
)

TYPES: Final = frozenset({"agent_created", "agent_deleted", "status_change", "error"})
# AgentMetrics keys -> canonical agent.usage fields.
_TOTALS: Final = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                  ("cache_read_input_tokens", "cache_read_tokens"),
                  ("cache_creation_input_tokens", "cache_creation_tokens"))


def _recognises(raw: Raw) -> bool:
    data = raw.get("data")
    # The dashboard's `agent_deleted` frame names its agent `id`; this one `agent_id`.
    return isinstance(data, dict) and "agent_id" in data


def _translate(raw: Raw) -> list[Canonical]:
    data: dict[str, Any] = raw["data"]
    kind = raw["type"]
    agent_id = data.get("agent_id")
    when = present(timestamp=timestamp(raw.get("timestamp")))
    if kind == "agent_created":
        fields = {key: value for key, value in data.items() if key != "name"}
        return [{**fields, **when, "type": "agent.created"}]
    if kind == "agent_deleted":
        # agent.files comes last: the ids of the events before it are derived from their place.
        return [*_totals(agent_id, data.get("metrics"), when),
                {**when, "type": "agent.deleted", "agent_id": agent_id},
                *_files(agent_id, data.get("metrics"), when)]
    if kind == "status_change":
        status = data.get("new_status")
        if status == "deleted":  # cleanup after the end, not a failure
            return [{**when, "type": "agent.deleted", "agent_id": agent_id}]
        return [{**when, "type": "agent.status_changed", "agent_id": agent_id, "status": status}]
    if kind == "error":
        return [{**when, "type": "log.entry", "level": "error", "agent_id": agent_id,
                 "message": text(data.get("error")) or ""}]
    return ignored(raw)  # a type named by a dialect hint that this source does not have


def _totals(agent_id: object, metrics: object, when: dict[str, Any]) -> list[Canonical]:
    if not isinstance(metrics, dict):
        return []
    usage = present(**{name: metrics.get(key) for key, name in _TOTALS})
    return [{**when, **usage, "type": "agent.usage", "agent_id": agent_id, "totals": True,
             **present(cost_usd=dollars(metrics.get("total_cost"), "data.metrics.total_cost"))}]


def _files(agent_id: object, metrics: object, when: dict[str, Any]) -> list[Canonical]:
    """The final metrics' files_read and files_written, when it names any."""
    if not isinstance(metrics, dict):
        return []
    files = {name: metrics[key] for key, name in (("files_read", "read"),
                                                  ("files_written", "written"))
             if isinstance(metrics.get(key), list) and metrics[key]}
    return [{**when, **files, "type": "agent.files", "agent_id": agent_id}] if files else []


RECEIVER: Final = Receiver(name="orchestrator_monitor", types=TYPES, recognises=_recognises,
                           translate=_translate, keyed=lambda raw: True)
