"""@orchestr8's event bus: the bare events its `BoundedEventBus` hands to listeners.

    {"type": "execution.queued", "executionId": "...", "workflowId": "release"}
    {"type": "step.completed", "stepId": "build", "output": {...}}

`execution.*` events name the run (`executionId`); `workflow.*` events name only the workflow
(`workflow.started` with `timestamp` in epoch milliseconds); `step.completed` and `step.failed`
name only the step. Errors are `{name, message}`. The fleet state correlates what has no run id
(docs/events.md). The spec's broadcaster may add an ISO `timestamp` and its own
`connection.established`, `log.entry` and `metrics.update` messages. The envelope of the
original proposal (`workflowId` with `executionId`, fields in `data`) is read here too.
"""

from __future__ import annotations

from typing import Any, Final

from exporter.dialects.base import (
    Canonical,
    Raw,
    Receiver,
    error_parts,
    ignored,
    present,
    timestamp,
    with_data,
)

_RUNS: Final = {"execution.queued": "workflow.started", "execution.started": "workflow.started",
                "execution.cancelled": "workflow.cancelled",
                "workflow.started": "workflow.started", "workflow.completed": "workflow.completed",
                "workflow.failed": "workflow.failed", "workflow.cancelled": "workflow.cancelled"}
_STEPS: Final = frozenset({"step.started", "step.completed", "step.failed", "step.skipped",
                           "step.cancelled", "step.retried"})
# Defined by its schema, or sent by the spec's broadcaster, with nothing to count.
IGNORED: Final = frozenset({"retry.attempted", "circuitBreaker.opened", "timeout.exceeded",
                            "connection.established", "pong"})
_PASSED_ON: Final = frozenset({"log.entry", "metrics.update"})
TYPES: Final = frozenset({*_RUNS, *_STEPS, *IGNORED, *_PASSED_ON})
_IDS: Final = ("executionId", "workflowId", "stepId")
# Fields of the bus that the canonical event has under another name, or not at all.
_CONSUMED: Final = frozenset({"type", "executionId", "workflowId", "stepId", "data", "error",
                              "timestamp", "id", "source", "dialect", "reason", "output",
                              "duration", "retryable"})


def _recognises(raw: Raw) -> bool:
    if raw.get("type") in IGNORED:
        return True
    return "run_id" not in raw and "runId" not in raw and any(key in raw for key in _IDS)


def _recognises_unknown(raw: Raw) -> bool:
    """A dotted type (the bus's naming) beside the bus's own ids, e.g. a newer `step.retrying`."""
    event_type = raw.get("type")
    return isinstance(event_type, str) and "." in event_type and _recognises(raw)


def _translate(raw: Raw) -> list[Canonical]:
    kind = raw["type"]
    if kind in IGNORED:
        return ignored(raw)
    flat = with_data(raw)
    rest = {key: value for key, value in flat.items() if key not in _CONSUMED}
    when = present(timestamp=timestamp(flat.get("timestamp")))
    if kind in _PASSED_ON:
        return [{**rest, **when, "type": kind, **present(run_id=flat.get("executionId"))}]
    errors = error_parts(flat.get("error") if "error" in flat else flat.get("reason"))
    if kind in _STEPS:
        return [{**rest, **when, **_error_fields(kind, errors), "type": kind,
                 **present(run_id=flat.get("executionId"), step_id=flat.get("stepId"))}]
    canonical = _RUNS.get(kind)
    if canonical is None:  # a type of its form that it does not list
        return ignored(raw)
    return [{**rest, **when, **_error_fields(canonical, errors), "type": canonical,
             **present(run_id=flat.get("executionId"), workflow=flat.get("workflowId"))}]


def _error_fields(kind: str, errors: dict[str, Any]) -> dict[str, Any]:
    if kind.endswith(".failed"):
        return errors
    if kind.endswith(".cancelled"):
        return present(error=errors.get("error"))  # the reason
    return {}


RECEIVER: Final = Receiver(
    name="orchestr8", types=TYPES, recognises=_recognises, translate=_translate,
    # Bare bus events carry no time of their own: two equal ones may be two facts (the same
    # step of two runs), so only an event with a timestamp gets an id from its content.
    keyed=lambda raw: raw.get("timestamp") is not None,
    recognises_unknown=_recognises_unknown)
