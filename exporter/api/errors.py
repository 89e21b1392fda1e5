"""One JSON shape for every error: code, message, details, request_id."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse as StarletteJSONResponse

log = logging.getLogger(__name__)


class JSONResponse(StarletteJSONResponse):
    """JSON rendered by orjson (FastAPI 0.165 deprecates its own ORJSONResponse). A subclass
    of Starlette's, so that FastAPI documents a route's response model as its 200 schema."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error the API answers with its status and structured body."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def request_id(request: Request) -> str:
    existing = getattr(request.state, "request_id", None)
    if existing is None:
        supplied = request.headers.get("x-request-id", "")
        existing = supplied if 0 < len(supplied) <= 128 and supplied.isprintable() \
            else uuid.uuid4().hex
        request.state.request_id = existing
    return str(existing)


def error_response(request: Request, status: int, code: str, message: str,
                   details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    rid = request_id(request)
    body = {"code": code, "message": message, "details": details or [], "request_id": rid}
    return JSONResponse(body, status_code=status,
                        headers={**(headers or {}), "X-Request-ID": rid})


def install_error_handlers(app: FastAPI) -> None:
    """Route every failure, ours or the framework's, through `error_response`."""

    async def api_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(request, error.status, error.code, error.message, error.details,
                              error.headers)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(request, error.status_code, code, str(error.detail),
                              headers=dict(error.headers or {}))

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        details = [{"field": ".".join(str(part) for part in item["loc"]), "reason": item["msg"]}
                   for item in error.errors()]
        return error_response(request, 422, "invalid_request", "the request is invalid",
                              details)

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "an unexpected error occurred")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
