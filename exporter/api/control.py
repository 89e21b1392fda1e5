"""Commands and the audit trail over HTTP: operators issue, orchestrators take and answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any, Final, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from exporter.api.deps import actor_of, audit, guard, json_body
from exporter.api.errors import ApiError, JSONResponse
from exporter.api.guards import RateLimiter
from exporter.control.alerts import Planned, plan
from exporter.control.audit import Actor
from exporter.control.commands import (
    KEY_PATTERN,
    KINDS,
    MAX_TTL_SECONDS,
    NAME_PATTERN,
    RESULTS,
    TARGETS,
    Command,
    CommandError,
    CommandRequest,
    Kind,
    Status,
    parse_command,
    storable,
)
from exporter.control.enforcer import blocking
from exporter.control.queue import CommandConflictError, UnknownCommandError
from exporter.control.targets import check_target
from exporter.service import Exporter
from exporter.tokens import Token, TokenRegistry

MAX_COMMAND_BYTES: Final = 64 * 1024
MAX_WEBHOOK_BYTES: Final = 1024 * 1024
_CANCEL_KEYS: Final = frozenset({"args", "ttl_seconds", "idempotency_key", "source"})
_RESULT_KEYS: Final = frozenset({"status", "detail"})
NAME: Final = 128
# Ids the queue gives are 32 hex digits; longer is no command's.
COMMAND_ID: Final = 64
MAX_WAIT_SECONDS: Final = 60.0
# A long poll looks again this often even without news: a command due for redelivery, say.
RECHECK_SECONDS: Final = 1.0

_ERRORS: Final = {400: {"description": "the body is not JSON"},
                  401: {"description": "no or unknown token"},
                  403: {"description": "the token's role may not do this"},
                  413: {"description": "the body is too large"},
                  429: {"description": "too many requests for this token (Retry-After)"}}
_NAME: Final = {"type": "string", "pattern": f"^{NAME_PATTERN}$", "maxLength": NAME}
_COMMON: Final = {  # `args` are the orchestrator's, passed on as they are: the body cap bounds them
    "args": {"type": "object"},
    "ttl_seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TTL_SECONDS},
    "idempotency_key": {"type": "string", "pattern": f"^{KEY_PATTERN}$", "maxLength": NAME}}
_COMMAND_BODY: Final = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["kind"], "additionalProperties": False,
               "properties": {
                   "kind": {"type": "string", "enum": list(KINDS)},
                   "target": {"type": "object", "additionalProperties": _NAME,
                              "maxProperties": max(len(required) + len(optional)
                                                   for required, optional in TARGETS.values())},
                   **_COMMON}}}}}}
_CANCEL_BODY: Final = {"requestBody": {"required": False, "content": {"application/json": {
    "schema": {"type": "object", "additionalProperties": False,
               "properties": {**_COMMON, "source": _NAME}}}}}}
_RESULT_BODY: Final = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["status"], "additionalProperties": False,
               "properties": {"status": {"type": "string", "enum": list(RESULTS)},
                              "detail": {"description": "the orchestrator's, stored as it is"}}}}}}}
CommandId = Annotated[str, Path(max_length=COMMAND_ID)]
TaskId = Annotated[str, Path(max_length=NAME)]


class _News:
    """Wakes the long polls when a command is queued."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def tell(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


def control_router(exporter: Exporter, tokens: TokenRegistry,
                   limiter: RateLimiter) -> APIRouter:
    """`/api/v1/commands`, `/api/v1/tasks/{id}/cancel` and `/api/v1/audit`."""
    router = APIRouter(prefix="/api/v1", responses=_ERRORS)  # type: ignore[arg-type]
    telemetry = exporter.telemetry
    may_command = Depends(guard(tokens, telemetry, "command", limiter))
    may_read = Depends(guard(tokens, telemetry, "read", limiter))
    may_deliver = Depends(guard(tokens, telemetry, "deliver", limiter))
    may_admin = Depends(guard(tokens, telemetry, "admin", limiter))
    news = _News()

    async def create_command(actor: Actor, command_request: CommandRequest,
                             detail: Any = None) -> tuple[Command, bool]:
        """Find the command by its key, or check the target and store it; audit; wake polls."""
        kind = command_request.kind
        if command_request.idempotency_key is not None:  # a retry: answered as before
            existing = await run_in_threadpool(exporter.commands.by_key,
                                               command_request.idempotency_key)
            if existing is not None:
                if (existing.kind, existing.target) != (kind, command_request.target):
                    raise ApiError(409, "conflict", "this idempotency key names another "
                                   f"command ({existing.kind} {existing.target})")
                telemetry.commands.labels(kind, "duplicate").inc()
                await audit(exporter, actor, f"command.{kind}", existing.target, "duplicate",
                             {"command": existing.id, **(detail or {})})
                return existing, False
        problem = check_target(kind, command_request.target, exporter.state, exporter.lock)
        if problem is not None:
            telemetry.commands.labels(kind, "refused").inc()
            await audit(exporter, actor, f"command.{kind}", command_request.target,
                         "refused", {"reason": problem.reason, **(detail or {})})
            code = "not_found" if problem.status == 404 else "conflict"
            raise ApiError(problem.status, code, problem.reason)
        command, created = await run_in_threadpool(
            exporter.commands.create, command_request, issued_by=actor.token)
        outcome = "queued" if created else "duplicate"
        telemetry.commands.labels(kind, outcome).inc()
        await audit(exporter, actor, f"command.{kind}", command.target, outcome,
                     {"command": command.id, **(detail or {})})
        if created:
            news.tell()
        return command, created

    async def issue(request: Request, token: Token, body: dict[str, Any],
                    size: int) -> Response:
        actor = actor_of(request, token)
        try:
            command_request = parse_command(body, args_size=size)
        except CommandError as error:
            await audit(exporter, actor, "command", body.get("kind"), "refused",
                         error.problems)
            raise ApiError(422, "invalid_command", "the command is invalid; nothing was "
                           "stored", error.problems) from None
        command, created = await create_command(actor, command_request)
        return JSONResponse(command.as_dict(), status_code=201 if created else 200)

    @router.post("/alertmanager/webhook", summary="Alertmanager's webhook: alerts that act",
                 responses={413: {"description": "body too large"},
                            422: {"description": "not a webhook payload"}})
    async def alertmanager_webhook(request: Request,
                                   token: Token = may_command) -> dict[str, Any]:
        payload, _ = await json_body(request, MAX_WEBHOOK_BYTES)
        try:
            planned = plan(payload, exporter.config.alert_actions,
                           budgets=exporter.budgets.budgets, state=exporter.state,
                           lock=exporter.lock)
        except CommandError as error:
            raise ApiError(422, "invalid_payload", "not an Alertmanager webhook payload",
                           error.problems) from None
        return await act_on(planned, actor_of(request, token))

    async def act_on(planned: list[Planned], actor: Actor) -> dict[str, Any]:
        dry_run = exporter.config.alert_actions.dry_run
        answer: dict[str, Any] = {"dry_run": dry_run, "commands": [], "skipped": []}
        for item in planned:
            alert = {"alert": item.alert, "labels": item.labels}
            if item.request is None:
                answer["skipped"].append({**alert, "reason": item.reason})
                await audit(exporter, actor, "alert", alert, "skipped", item.reason)
            elif dry_run:
                would = {"kind": item.request.kind, "target": item.request.target}
                answer["commands"].append({**alert, "would_issue": would})
                await audit(exporter, actor, f"command.{item.request.kind}",
                             item.request.target, "dry_run", alert)
            else:
                try:
                    command, _ = await create_command(actor, item.request, alert)
                except ApiError as error:  # the target ended meanwhile: the others go on
                    answer["skipped"].append({**alert, "reason": error.message})
                    continue
                answer["commands"].append({**alert, "command": command.as_dict()})
        return answer

    @router.post("/commands", summary="Issue a command to the orchestrators", status_code=201,
                 openapi_extra=_COMMAND_BODY, responses={
                     200: {"description": "the command with the same idempotency key"},
                     404: {"description": "the target is not known"},
                     409: {"description": "the target has ended"},
                     413: {"description": "body too large"},
                     422: {"description": "invalid command; nothing stored"}})
    async def create(request: Request, token: Token = may_command) -> Response:
        body, size = await json_body(request, MAX_COMMAND_BYTES)
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_command", "a command must be a JSON object",
                           [{"field": "", "reason": "must be an object"}])
        return await issue(request, token, body, size)

    @router.post("/tasks/{task_id}/cancel", summary="Cancel a task (a task.cancel command)",
                 status_code=201, openapi_extra=_CANCEL_BODY,
                 responses={404: {"description": "no such task"},
                            409: {"description": "the task has ended"}})
    async def cancel_task(task_id: TaskId, request: Request,
                          token: Token = may_command) -> Response:
        body, size = await json_body(request, MAX_COMMAND_BYTES, optional=True)
        unknown = sorted(set(body) - _CANCEL_KEYS) if isinstance(body, dict) else [""]
        if unknown:
            problems = [{"field": name, "reason": "unknown field" if name else
                         "must be an object"} for name in unknown]
            raise ApiError(422, "invalid_command", "the command is invalid; nothing was "
                           "stored", problems)
        command = {"kind": "task.cancel", **{key: value for key, value in body.items()
                                              if key != "source"},
                   "target": {"task_id": task_id, **({"source": body["source"]}
                                                     if "source" in body else {})}}
        return await issue(request, token, command, size)

    @router.get("/commands", summary="List commands, oldest first")
    async def list_commands(
            status: Status | None = None,
            kind: Kind | None = None,
            cursor: int = Query(0, ge=0, le=2**62),
            limit: int = Query(100, ge=1, le=500),
            _token: Token = may_read) -> dict[str, Any]:
        items, next_cursor = await run_in_threadpool(
            exporter.commands.list, status=status, kind=kind, after=cursor, limit=limit)
        return {"items": [command.as_dict() for command in items], "next_cursor": next_cursor}

    @router.get("/commands/next", summary="Take the next command (long poll)",
                responses={204: {"description": "none came within `wait` seconds"}})
    async def next_command(request: Request,
                           wait: float = Query(0, ge=0, le=MAX_WAIT_SECONDS),
                           source: str = Query("default", min_length=1, max_length=128),
                           token: Token = may_deliver) -> Response:
        deadline = time.monotonic() + wait
        while True:
            command = await run_in_threadpool(exporter.commands.take_next, source)
            if command is not None:
                _delivered(exporter, command)
                await audit(exporter, actor_of(request, token), f"deliver.{command.kind}",
                             {"command": command.id}, "delivered")
                return JSONResponse(command.as_dict())
            remaining = deadline - time.monotonic()
            if remaining <= 0 or await request.is_disconnected():
                return Response(status_code=204)
            await news.wait(min(remaining, RECHECK_SECONDS))

    @router.get("/commands/{command_id}", summary="One command",
                responses={404: {"description": "no such command"}})
    async def get_command(command_id: CommandId, _token: Token = may_read) -> dict[str, Any]:
        try:
            command = await run_in_threadpool(exporter.commands.get, command_id)
        except UnknownCommandError:
            raise ApiError(404, "not_found", f"no command {command_id!r}") from None
        return command.as_dict()

    @router.post("/commands/{command_id}/result", summary="Report a command's result",
                 openapi_extra=_RESULT_BODY, responses={
                     404: {"description": "no such command"},
                     409: {"description": "the command has ended otherwise"},
                     422: {"description": "invalid result"}})
    async def result(command_id: CommandId, request: Request,
                     token: Token = may_deliver) -> dict[str, Any]:
        body, _ = await json_body(request, MAX_COMMAND_BYTES)
        unknown = sorted(set(body) - _RESULT_KEYS) if isinstance(body, dict) else []
        if unknown:
            raise ApiError(422, "invalid_result", "a result holds status and detail only",
                           [{"field": name[:NAME], "reason": "unknown field"}
                            for name in unknown[:10]])
        status = body.get("status") if isinstance(body, dict) else None
        if status not in RESULTS:
            raise ApiError(422, "invalid_result", "status: must be one of " + ", ".join(RESULTS),
                           [{"field": "status", "reason": "must be one of " + ", ".join(RESULTS)}])
        detail = body.get("detail") if isinstance(body, dict) else None
        if not storable(detail):
            raise ApiError(422, "invalid_result", "detail: nested too deeply to store",
                           [{"field": "detail", "reason": "nested too deeply to store"}])
        try:
            command, changed = await run_in_threadpool(
                exporter.commands.finish, command_id, status, detail)
        except UnknownCommandError:
            raise ApiError(404, "not_found", f"no command {command_id!r}") from None
        except CommandConflictError as error:
            raise ApiError(409, "conflict", str(error)) from None
        if changed:
            telemetry.commands.labels(command.kind, status).inc()
            await audit(exporter, actor_of(request, token), f"result.{command.kind}",
                         {"command": command.id}, str(status), detail)
        return command.as_dict()

    @router.get("/admission", summary="May new work of this scope start? (budgets that act)")
    async def admission(
            role: str | None = Query(None, max_length=128),
            model: str | None = Query(None, max_length=128),
            task_type: str | None = Query(None, max_length=128),
            workflow: str | None = Query(None, max_length=128),
            _token: Token = may_deliver) -> dict[str, Any]:
        dimensions = {key: value for key, value in (
            ("role", role.upper() if role else None), ("model", model),
            ("task_type", task_type), ("workflow", workflow)) if value is not None}
        names = await run_in_threadpool(blocking, exporter.budgets.budgets, exporter.state,
                                        exporter.lock, dimensions, time.time())
        return {"allowed": not names, "budgets": names}

    @router.get("/audit", summary="The audit trail, oldest first (JSON, or NDJSON to export)",
                responses={200: {"content": {"application/x-ndjson": {
                    "schema": {"type": "string"}}}}})
    async def audit_trail(
            action: str | None = Query(None, max_length=64),
            token_name: str | None = Query(None, alias="token", max_length=64),
            since: float | None = Query(None, ge=0),
            until: float | None = Query(None, ge=0),
            cursor: int = Query(0, ge=0, le=2**62),
            limit: int = Query(100, ge=1, le=1000),
            format: Literal["json", "ndjson"] = "json",
            _token: Token = may_admin) -> Response:
        entries, next_cursor = await run_in_threadpool(
            exporter.audit.list, action=action, token=token_name, since=since, until=until,
            after=cursor, limit=limit)
        if format == "ndjson":
            lines = b"".join(orjson.dumps(entry.as_dict()) + b"\n" for entry in entries)
            headers = {} if next_cursor is None else {"X-Next-Cursor": str(next_cursor)}
            return Response(lines, media_type="application/x-ndjson", headers=headers)
        return JSONResponse({"items": [entry.as_dict() for entry in entries],
                             "next_cursor": next_cursor})

    return router


def _delivered(exporter: Exporter, command: Command) -> None:
    exporter.telemetry.commands.labels(command.kind, "delivered").inc()
    if command.deliveries == 1 and command.delivered_at is not None:
        exporter.telemetry.command_delivery.observe(
            max(0.0, command.delivered_at - command.created_at))
