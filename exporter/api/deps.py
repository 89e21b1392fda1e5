"""What the routes share: who is calling, and whether the token's role may do this."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from exporter.api.errors import ApiError
from exporter.api.guards import RateLimiter, retry_after
from exporter.api.ingest import read_body
from exporter.control.audit import Actor
from exporter.events import Event
from exporter.pipeline import (
    IngestResult,
    LedgerFullError,
    LedgerUnavailableError,
    PipelineBusyError,
)
from exporter.rows import PreparedRows
from exporter.service import Exporter
from exporter.telemetry import Telemetry
from exporter.tokens import Capability, Token, TokenRegistry

Guard = Callable[[Request], Awaitable[Token]]


def guard(registry: TokenRegistry, telemetry: Telemetry, capability: Capability,
          limiter: RateLimiter | None = None) -> Guard:
    """A dependency: the caller's token when its role may `capability`; 401 without a known
    token, 403 when its role may not, 429 (with Retry-After) past `limiter`'s rate for the
    token (or, without one, the client address). The token is left in `request.state.token`."""

    # async: a plain def would run in a thread of the pool for every request, waiting for the
    # GIL twice (there and back) while the applier and the writer hold it.
    async def require(request: Request) -> Token:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        token = registry.authenticate(secret) if scheme.lower() == "bearer" and secret else None
        if limiter is not None:
            caller = f"token:{token.name}" if token is not None else \
                f"client:{request.client.host if request.client else ''}"
            wait = limiter.take(caller)
            if wait:
                raise ApiError(429, "rate_limited", "too many requests; slow down",
                               headers={"Retry-After": retry_after(wait)})
        if token is None:
            telemetry.rejected.labels("unauthorized").inc()
            raise ApiError(401, "unauthorized", "a valid bearer token is required",
                           headers={"WWW-Authenticate": "Bearer"})
        if not token.may(capability):
            telemetry.rejected.labels("unauthorized").inc()
            raise ApiError(403, "forbidden", f"the token {token.name!r} (role {token.role}) "
                           f"may not {capability}")
        request.state.token = token
        return token

    return require


def actor_of(request: Request, token: Token) -> Actor:
    """Who asked, for the audit trail: the token's name, the client address, the user agent."""
    client = request.client.host if request.client is not None else ""
    return Actor(token.name, client, request.headers.get("user-agent", ""))


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters; "" when it names none."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_media_type(request: Request, accepted: tuple[str, ...]) -> None:
    """415 for a body declared as anything but `accepted` (or a `+json` type when JSON is
    accepted); a body without Content-Type is read as the first accepted type."""
    declared = media_type(request)
    if not declared or declared in accepted or (
            "application/json" in accepted and declared.endswith("+json")):
        return
    raise ApiError(415, "unsupported_media_type",
                   f"the body must be {' or '.join(accepted)}, not {declared[:64]}",
                   [{"field": "Content-Type", "reason": "must be " + " or ".join(accepted)}])


async def json_body(request: Request, limit: int, *, optional: bool = False) -> tuple[Any, int]:
    """The body as JSON and its size: 415 when declared as another media type, 413 past
    `limit` bytes, 400 when it is not JSON; an empty body is `{}` when `optional`."""
    body = await read_body(request, limit)
    if optional and not body.strip():
        return {}, 0
    require_media_type(request, ("application/json",))
    try:
        return orjson.loads(body), len(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, "malformed_json", "the body is not valid JSON (UTF-8)",
                       [{"field": "", "reason": str(error)}]) from None


async def audit(exporter: Exporter, actor: Actor, action: str, target: Any, outcome: str,
                detail: Any = None) -> None:
    """Append to the audit trail without holding up the event loop."""
    await run_in_threadpool(exporter.audit.record, actor, action, target, outcome, detail)


async def commit_events(exporter: Exporter, events: list[Event], received: float,
                        rows: PreparedRows | None = None) -> IngestResult:
    """Submit validated events to the pipeline and wait until they are durably committed;
    503 (busy, ledger_full, ledger_unavailable) when they cannot be."""
    try:
        future = exporter.pipeline.submit(events, received, rows)
    except PipelineBusyError as error:
        raise ApiError(503, "busy", str(error), headers={"Retry-After": "1"}) from None
    except LedgerUnavailableError as error:
        raise ApiError(503, "ledger_unavailable", str(error)) from None
    try:
        return await asyncio.wrap_future(future)
    except LedgerFullError as error:
        raise ApiError(503, "ledger_full", "the ledger has no space for the batch (disk full or "
                       "EXPORTER_SQLITE_MAX_BYTES); nothing was stored, retry with the same ids "
                       "once space is freed", [{"reason": str(error)}],
                       headers={"Retry-After": "30"}) from None
    except LedgerUnavailableError as error:
        raise ApiError(503, "ledger_unavailable", "the ledger refused the batch; nothing was "
                       "stored, retry with the same ids", [{"reason": str(error)}]) from None
