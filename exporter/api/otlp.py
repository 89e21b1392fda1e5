"""OTLP/HTTP on the exporter's port: `POST /v1/metrics` and `POST /v1/logs`.

Claude Code (or any OpenTelemetry SDK) exports here with `OTEL_EXPORTER_OTLP_ENDPOINT` set to
the exporter and the bearer token in `OTEL_EXPORTER_OTLP_HEADERS`. A request is answered once
its canonical events are committed, like every ingest; a refused one gets OTLP's `Status` in the
request's encoding and stores nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from fastapi import APIRouter, Depends, Request, Response
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from starlette.concurrency import run_in_threadpool

from exporter.api.deps import commit_events, guard
from exporter.api.errors import ApiError
from exporter.api.ingest import read_body
from exporter.events import Event, validate_batch
from exporter.otlp.claude_code import ClaudeCodeReceiver, Defaults, Translation
from exporter.otlp.wire import (
    JSON,
    OtlpError,
    decompressed,
    encoded,
    encoding_of,
    parsed,
    status_body,
)
from exporter.service import Exporter
from exporter.tokens import TokenRegistry

# Smaller bodies are translated on the event loop; larger ones in a thread, so that one cannot
# stall the server.
INLINE_BYTES: Final = 64 * 1024
# Problems named in the Status of a request whose events would break the contract.
SHOWN_PROBLEMS: Final = 10
_REASONS: Final = {413: "oversize", 400: "malformed", 415: "malformed"}
_BINARY: Final = {"type": "string", "format": "binary"}
_STATUS: Final = {"type": "object", "properties": {
    "code": {"type": "integer"}, "message": {"type": "string"}, "details": {"type": "array"}}}


def _either(description: str, json_schema: dict[str, Any]) -> dict[str, Any]:
    """An answer in the request's encoding: protobuf, or OTLP/JSON."""
    return {"description": description, "content": {
        "application/x-protobuf": {"schema": _BINARY}, JSON: {"schema": json_schema}}}


_OPENAPI: Final = {
    "requestBody": {"required": True, "content": {
        "application/x-protobuf": {"schema": _BINARY}, JSON: {"schema": {"type": "object"}}}},
    "responses": {
        "200": _either("the signal's Export*ServiceResponse (a partial success names what was "
                       "not used)", {"type": "object"}),
        "400": _either("a google.rpc.Status: the body is not an export request", _STATUS),
        "401": {"description": "no or unknown token (the API's error shape)"},
        "403": {"description": "the token may not ingest (the API's error shape)"},
        "413": _either("a google.rpc.Status: the body is too large", _STATUS),
        "415": _either("a google.rpc.Status: neither protobuf nor JSON, or not gzip", _STATUS),
        "503": _either("a google.rpc.Status: busy or the ledger refused; retry (Retry-After)",
                       _STATUS)}}

Translate = Callable[[Any, float], Translation]


def otlp_router(exporter: Exporter, tokens: TokenRegistry) -> APIRouter:
    """The OTLP/HTTP receiver of Claude Code's metrics and events (docs/integrations.md)."""
    settings = exporter.settings
    receiver = ClaudeCodeReceiver(Defaults(
        source=settings.otlp_default_source, role=settings.claude_code_role.upper(),
        task_id=settings.otlp_default_task_id, usage_from=settings.otlp_usage_from))
    router = APIRouter(tags=["otlp"])
    may_ingest = [Depends(guard(tokens, exporter.telemetry, "ingest"))]

    async def export(request: Request, message: Message, translate: Translate,
                     answer: Callable[[str], Message], unit: str) -> Response:
        received = time.time()
        encoding = JSON
        translation: Translation | None = None
        try:
            encoding = encoding_of(request.headers.get("content-type"))
            data = decompressed(await _body(request, settings.max_body_bytes),
                                request.headers.get("content-encoding"), settings.max_body_bytes)

            def translated() -> tuple[Translation, list[Event]]:
                return _validated(translate(parsed(data, encoding, message), received),
                                  received, receiver, settings.max_event_tokens)

            stored, events = translated() if len(data) <= INLINE_BYTES \
                else await run_in_threadpool(translated)
            translation = stored
            await _commit(exporter, events, received, settings.max_batch_events)
        except OtlpError as error:
            if translation is not None:
                receiver.failed(translation)
            if error.status in _REASONS:
                exporter.telemetry.rejected.labels(_REASONS[error.status]).inc()
            headers = {"Retry-After": error.retry_after} if error.retry_after else None
            return Response(status_body(error, encoding), status_code=error.status,
                            media_type=encoding, headers=headers)
        except BaseException:
            if translation is not None:  # its events may be stored or not: the retry tells
                receiver.failed(translation)
            raise
        receiver.committed(stored)
        warning = f"{stored.unused} {unit} carried nothing of Claude Code's to count " \
            "(docs/integrations.md); nothing was rejected" if stored.unused else ""
        return Response(encoded(answer(warning), encoding), media_type=encoding)

    @router.post("/v1/metrics", summary="OTLP/HTTP metrics export (Claude Code's counters)",
                 dependencies=may_ingest, response_class=Response,
                 openapi_extra=_OPENAPI)
    async def metrics(request: Request) -> Response:
        return await export(request, ExportMetricsServiceRequest(), receiver.metrics,
                            _metrics_answer, "data points")

    @router.post("/v1/logs", summary="OTLP/HTTP logs export (Claude Code's events)",
                 dependencies=may_ingest, response_class=Response,
                 openapi_extra=_OPENAPI)
    async def logs(request: Request) -> Response:
        return await export(request, ExportLogsServiceRequest(), receiver.logs,
                            _logs_answer, "log records")

    return router


def _metrics_answer(warning: str) -> Message:
    """Success; OTLP's partial success with nothing rejected carries a warning."""
    if not warning:
        return ExportMetricsServiceResponse()
    return ExportMetricsServiceResponse(
        partial_success=ExportMetricsPartialSuccess(error_message=warning))


def _logs_answer(warning: str) -> Message:
    if not warning:
        return ExportLogsServiceResponse()
    return ExportLogsServiceResponse(
        partial_success=ExportLogsPartialSuccess(error_message=warning))


async def _body(request: Request, limit: int) -> bytes:
    try:
        return await read_body(request, limit)
    except ApiError as error:
        raise OtlpError(error.status, error.message) from None


def _validated(translation: Translation, received: float, receiver: ClaudeCodeReceiver,
               max_tokens: int) -> tuple[Translation, list[Event]]:
    """The canonical events, or 400 naming what made them invalid (a token count past
    EXPORTER_MAX_EVENT_TOKENS, say); the cumulative series are then put back."""
    events, problems = validate_batch(translation.events, received, max_tokens=max_tokens)
    if not problems:
        return translation, events
    receiver.failed(translation)
    shown = "; ".join(f"{translation.events[problem.index]['type']} {problem.field}: "
                      f"{problem.reason}" for problem in problems[:SHOWN_PROBLEMS])
    raise OtlpError(400, f"{len(problems)} of the events this request makes are invalid; "
                    f"nothing was stored: {shown}")


async def _commit(exporter: Exporter, events: list[Event], received: float,
                  chunk: int) -> None:
    """Store the events, `chunk` at a time (a request may make more than one batch holds), or
    503, which OTLP senders retry. A chunk stored before a later one failed is found again as
    duplicates then: every id is derived from the content."""
    for start in range(0, len(events), chunk):
        try:
            await commit_events(exporter, events[start:start + chunk], received)
        except ApiError as error:  # busy, or the ledger refused (a full disk too)
            retry_after = (error.headers or {}).get("Retry-After", "30")
            raise OtlpError(error.status, f"{error.code}: {error.message}",
                            retry_after=retry_after) from None
