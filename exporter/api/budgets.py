"""Budgets at runtime over HTTP: listed with their spend (viewer), made, changed, deleted
(admin)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from exporter.api.deps import actor_of, audit, guard, json_body
from exporter.api.errors import ApiError, JSONResponse
from exporter.api.guards import RateLimiter
from exporter.config import (
    BUDGET_NAME_LENGTH,
    BUDGET_NAME_PATTERN,
    ON_EXCEED,
    PERIODS,
    SCOPE_KEYS,
    Budget,
    ConfigError,
    parse_budget,
)
from exporter.control.budget_book import (
    ConfigBudgetError,
    TooManyBudgetsError,
    UnknownBudgetError,
)
from exporter.events import MAX_NAME_LENGTH
from exporter.reads.budgets import budget_report
from exporter.service import Exporter
from exporter.tokens import Token, TokenRegistry

MAX_BUDGET_BYTES: Final = 16 * 1024
_SCOPE_VALUE: Final = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
_BODY: Final = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["limit_usd", "period"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": f"^{BUDGET_NAME_PATTERN}$",
                 "maxLength": BUDGET_NAME_LENGTH},
        "limit_usd": {"type": "number", "exclusiveMinimum": 0},
        "period": {"type": "string", "enum": list(PERIODS)},
        "scope": {"type": "object", "additionalProperties": False,
                  "properties": dict.fromkeys(SCOPE_KEYS, _SCOPE_VALUE)},
        "on_exceed": {"type": "string", "enum": list(ON_EXCEED)}}}}}}}
BudgetName = Annotated[str, Path(max_length=BUDGET_NAME_LENGTH)]
_ERRORS: Final = {400: {"description": "the body is not JSON"},
                  401: {"description": "no or unknown token"},
                  403: {"description": "only admin tokens"},
                  413: {"description": "the body is too large"},
                  429: {"description": "too many requests for this token (Retry-After)"}}


def budgets_router(exporter: Exporter, tokens: TokenRegistry,
                   limiter: RateLimiter) -> APIRouter:
    """`/api/v1/budgets`: the config file's budgets read-only, runtime ones managed."""
    router = APIRouter(prefix="/api/v1/budgets", responses=_ERRORS)  # type: ignore[arg-type]
    may_admin = Depends(guard(tokens, exporter.telemetry, "admin", limiter))
    book = exporter.budgets

    may_read = Depends(guard(tokens, exporter.telemetry, "read", limiter))

    def described(budget: Budget) -> dict[str, Any]:
        return budget_report(budget, exporter.state.budgets, exporter.lock,
                             from_config=book.from_config(budget.name), now=time.time())

    async def save(request: Request, token: Token, name: str | None,
                   create_only: bool) -> Response:
        body, _ = await json_body(request, MAX_BUDGET_BYTES)
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_budget", "a budget must be a JSON object",
                           [{"field": "", "reason": "must be an object"}])
        entry = {**body, "name": name} if name is not None else body
        try:
            budget = parse_budget(entry, "budget")
        except ConfigError as error:
            raise ApiError(422, "invalid_budget", str(error),
                           [{"field": "", "reason": str(error)}]) from None
        if create_only and budget.name in {known.name for known in book.budgets}:
            raise ApiError(409, "conflict", f"a budget {budget.name!r} exists; PUT changes it")
        try:
            created = await run_in_threadpool(book.put, budget, by=token.name)
        except (ConfigBudgetError, TooManyBudgetsError) as error:
            raise ApiError(409, "conflict", str(error)) from None
        await audit(exporter, actor_of(request, token), "budget.put", {"budget": budget.name},
                    "created" if created else "changed", entry)
        return JSONResponse(await run_in_threadpool(described, budget),
                            status_code=201 if created else 200)

    @router.get("", summary="The budgets in force: limit, spend, projection, state")
    async def list_budgets(_token: Token = may_read) -> dict[str, Any]:
        budgets = book.budgets
        return {"items": [await run_in_threadpool(described, budget) for budget in budgets]}

    @router.post("", summary="Make a budget", status_code=201, openapi_extra=_BODY,
                 responses={409: {"description": "a budget of this name exists, or too "
                                             "many budgets (MAX_RUNTIME_BUDGETS)"},
                            422: {"description": "invalid budget"}})
    async def create(request: Request, token: Token = may_admin) -> Response:
        return await save(request, token, None, True)

    @router.put("/{name}", summary="Make or change a budget", openapi_extra=_BODY,
                responses={201: {"description": "made"},
                           409: {"description": "the config file's budget, or too many "
                                             "budgets (MAX_RUNTIME_BUDGETS)"},
                           422: {"description": "invalid budget"}})
    async def replace(name: BudgetName, request: Request, token: Token = may_admin) -> Response:
        return await save(request, token, name, False)

    @router.delete("/{name}", summary="Delete a runtime budget", status_code=204,
                   responses={404: {"description": "no such budget"},
                              409: {"description": "the config file's budget"}})
    async def delete(name: BudgetName, request: Request, token: Token = may_admin) -> Response:
        try:
            budget = await run_in_threadpool(book.delete, name)
        except UnknownBudgetError:
            raise ApiError(404, "not_found", f"no budget {name!r}") from None
        except ConfigBudgetError as error:
            raise ApiError(409, "conflict", str(error)) from None
        await audit(exporter, actor_of(request, token), "budget.delete", {"budget": budget.name},
                    "deleted")
        return Response(status_code=204)

    return router
