"""The audit trail: every command, result and admin action, appended to the ledger, never
changed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import Engine, select

from exporter.ledger import schema

MAX_PAGE: Final = 1_000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asked: the token's name, and where the request came from."""

    token: str
    client: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: float
    token: str
    action: str
    target: Any
    client: str
    user_agent: str
    outcome: str
    detail: Any

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "token": self.token, "action": self.action,
                "target": self.target, "client": self.client, "user_agent": self.user_agent,
                "outcome": self.outcome, "detail": self.detail}


class AuditTrail:
    """Appends entries and reads them back by filter, oldest first."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time,
                 reader: Engine | None = None) -> None:
        self.engine = engine
        self.reader = reader if reader is not None else engine  # lists: no write lock
        self.clock = clock

    def record(self, actor: Actor, action: str, target: Any, outcome: str,
               detail: Any = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(schema.audit.insert().values(
                at=self.clock(), token=actor.token[:64], action=action[:64],
                target=orjson.dumps(target).decode(), client=actor.client[:128],
                user_agent=actor.user_agent[:256], outcome=outcome[:32],
                detail=None if detail is None else orjson.dumps(detail).decode()))

    def list(self, *, action: str | None = None, token: str | None = None,
             since: float | None = None, until: float | None = None, after: int = 0,
             limit: int = 100) -> tuple[list[AuditEntry], int | None]:
        table = schema.audit
        query = select(table).where(table.c.seq > after)
        if action is not None:
            query = query.where(table.c.action == action)
        if token is not None:
            query = query.where(table.c.token == token)
        if since is not None:
            query = query.where(table.c.at >= since)
        if until is not None:
            query = query.where(table.c.at < until)
        limit = max(1, min(limit, MAX_PAGE))
        with self.reader.connect() as connection:
            rows = connection.execute(query.order_by(table.c.seq).limit(limit + 1)).all()
        entries = [_entry(row) for row in rows[:limit]]
        return entries, (entries[-1].seq if len(rows) > limit else None)


def _entry(row: Any) -> AuditEntry:
    values = dict(row._mapping)
    values["target"] = orjson.loads(values["target"])
    values["detail"] = None if values["detail"] is None else orjson.loads(values["detail"])
    return AuditEntry(**values)
