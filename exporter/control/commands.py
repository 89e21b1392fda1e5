"""What a command is: its kind, what it acts on, and its life.

    queued -> delivered -> succeeded | failed        (or expired, or rejected)

A command's `target` names what its kind acts on; `args` are passed to the orchestrator as they
are. Pause and resume take a scope, like a budget's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import orjson

TARGETS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # kind: (required target keys, optional target keys)
    "task.submit": ((), ("task_type", "source")),
    "task.cancel": (("task_id",), ("source",)),
    "workflow.start": (("workflow",), ("source",)),
    "workflow.cancel": (("run_id",), ("source",)),
    "step.retry": (("run_id", "step_id"), ("source",)),
    "agent.create": ((), ("role", "source")),
    "agent.delete": (("agent_id",), ("source",)),
    "fleet.pause": ((), ("role", "model", "task_type", "workflow", "source")),
    "fleet.resume": ((), ("role", "model", "task_type", "workflow", "source")),
}
Kind = Literal["task.submit", "task.cancel", "workflow.start", "workflow.cancel", "step.retry",
               "agent.create", "agent.delete", "fleet.pause", "fleet.resume"]
Status = Literal["queued", "delivered", "succeeded", "failed", "expired", "rejected"]
KINDS: Final = tuple(TARGETS)
STATUSES: Final[tuple[str, ...]] = get_args(Status)
OPEN_STATUSES: Final = frozenset({"queued", "delivered"})
# What an orchestrator reports: done, tried and failed, or refused without trying (a kind it
# has no handler for).
RESULTS: Final = ("succeeded", "failed", "rejected")
DEFAULT_TTL_SECONDS: Final = 300.0
MAX_TTL_SECONDS: Final = 86_400.0
MAX_ARGS_BYTES: Final = 16_384
# What a target's names and an idempotency key may be (the API's schema states them too).
NAME_PATTERN: Final = r"[A-Za-z0-9 _\-.:/@+#]{1,128}"
KEY_PATTERN: Final = r"[^\x00-\x1f\x7f]{1,128}"
_NAME: Final = re.compile(NAME_PATTERN)
_KEY: Final = re.compile(KEY_PATTERN)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command as asked for, checked."""

    kind: str
    target: dict[str, str]
    args: dict[str, Any]
    ttl_seconds: float
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class Command:
    """A command as the ledger holds it."""

    seq: int
    id: str
    kind: str
    source: str
    target: dict[str, str]
    args: dict[str, Any]
    status: str
    idempotency_key: str | None
    issued_by: str
    created_at: float
    expires_at: float
    delivered_at: float | None
    deliveries: int
    finished_at: float | None
    detail: Any

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "target": self.target, "args": self.args,
                "status": self.status, "idempotency_key": self.idempotency_key,
                "issued_by": self.issued_by, "created_at": self.created_at,
                "expires_at": self.expires_at, "delivered_at": self.delivered_at,
                "deliveries": self.deliveries, "finished_at": self.finished_at,
                "detail": self.detail}


class CommandError(ValueError):
    """A command that cannot be taken: the problems, each `{field, reason}`."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['reason']}" for p in problems))
        self.problems = problems


def parse_command(body: object, *, args_size: int) -> CommandRequest:
    """`{"kind", "target", "args", "ttl_seconds", "idempotency_key"}`, checked whole."""
    if not isinstance(body, dict):
        raise CommandError([{"field": "", "reason": "a command must be a JSON object"}])
    problems: list[dict[str, str]] = []
    unknown = sorted(set(body) - {"kind", "target", "args", "ttl_seconds", "idempotency_key"})
    problems += [{"field": name, "reason": "unknown field"} for name in unknown]
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in TARGETS:
        problems.append({"field": "kind", "reason": "must be one of " + ", ".join(KINDS)})
    target = _target(kind, body.get("target", {}), problems) \
        if isinstance(kind, str) and kind in TARGETS else {}
    args = body.get("args", {})
    if not isinstance(args, dict):
        problems.append({"field": "args", "reason": "must be an object"})
    elif args_size > MAX_ARGS_BYTES:
        problems.append({"field": "args", "reason": f"must be at most {MAX_ARGS_BYTES} bytes"})
    elif not storable(args):
        problems.append({"field": "args", "reason": "nested too deeply to store"})
    ttl = body.get("ttl_seconds", DEFAULT_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
            or not 0 < ttl <= MAX_TTL_SECONDS:
        problems.append({"field": "ttl_seconds",
                         "reason": f"must be a number above 0, at most {MAX_TTL_SECONDS:g}"})
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or _KEY.fullmatch(key) is None):
        problems.append({"field": "idempotency_key",
                         "reason": "must be 1 to 128 printable characters"})
    if problems:
        raise CommandError(problems)
    assert isinstance(args, dict) and isinstance(ttl, int | float)
    return CommandRequest(str(kind), target, args, float(ttl), key)


def _target(kind: str, target: object, problems: list[dict[str, str]]) -> dict[str, str]:
    required, optional = TARGETS[kind]
    if not isinstance(target, dict):
        problems.append({"field": "target", "reason": "must be an object"})
        return {}
    for name in required:
        if name not in target:
            problems.append({"field": f"target.{name}", "reason": f"is required for {kind}"})
    for name, value in target.items():
        if name not in required and name not in optional:
            problems.append({"field": f"target.{name}",
                             "reason": f"{kind} takes " + ", ".join((*required, *optional))})
        elif not isinstance(value, str) or _NAME.fullmatch(value) is None:
            problems.append({"field": f"target.{name}", "reason": "must be a name: 1 to 128 "
                             "of letters, digits, space and _ - . : / @ + #"})
    return {name: value for name, value in target.items() if isinstance(value, str)}


def storable(value: object) -> bool:
    """Whether the ledger can write it: orjson reads deeper nesting than it writes (254)."""
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True
