"""The HTTP face of the exporter: ingest, /metrics, health, and the event schema."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from exporter import __version__
from exporter.api.budgets import budgets_router
from exporter.api.control import control_router
from exporter.api.deps import commit_events, guard, require_media_type
from exporter.api.docs import install_docs
from exporter.api.errors import ApiError, JSONResponse, install_error_handlers, request_id
from exporter.api.guards import RateLimiter, SecurityHeaders
from exporter.api.hooks import hooks_router
from exporter.api.ingest import NDJSON_TYPES, BodyParser, read_body
from exporter.api.otlp import otlp_router
from exporter.api.reads import read_router
from exporter.api.stream import stream_router
from exporter.events import json_schema
from exporter.metrics import CONTENT_TYPE
from exporter.reads.stream import EventHub
from exporter.service import Exporter
from exporter.tokens import TokenRegistry

INGEST_TYPES = ("application/json", *NDJSON_TYPES)


def create_app(exporter: Exporter, *, tokens: TokenRegistry) -> FastAPI:
    """The FastAPI application over a started `Exporter`; `tokens` say who may do what.

    Its lifespan starts the parse workers (`EXPORTER_PARSE_WORKERS`); without it (or with 0
    workers) bodies are parsed in the server process.
    """
    settings = exporter.settings
    parser = BodyParser(workers=settings.parse_workers, max_events=settings.max_batch_events,
                        max_tokens=settings.max_event_tokens)

    hub = EventHub(exporter.ledger.events_after, max_subscribers=settings.stream_max_subscribers,
                   buffer_events=settings.stream_buffer_events)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await parser.start()
        hub.start(exporter.pipeline.applied_seq)
        exporter.pipeline.on_applied = hub.notify
        fan_out = asyncio.create_task(hub.run(), name="event-hub")
        try:
            yield
        finally:
            exporter.pipeline.on_applied = None
            fan_out.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fan_out
            await parser.close()

    app = FastAPI(title="orchestrator-exporter", version=__version__, docs_url=None,
                  redoc_url=None, default_response_class=JSONResponse, lifespan=lifespan)
    install_docs(app)
    install_error_handlers(app)
    limiter = RateLimiter(settings.api_rate_per_second, settings.api_burst)
    app.include_router(control_router(exporter, tokens, limiter))
    app.include_router(budgets_router(exporter, tokens, limiter))
    app.state.hub = hub  # the server ends open streams with it when it shuts down (cli)
    app.include_router(read_router(exporter, tokens, limiter, lambda: len(hub.subscribers)))
    app.include_router(stream_router(exporter, tokens, limiter, hub))
    app.include_router(hooks_router(exporter, tokens))
    app.include_router(otlp_router(exporter, tokens))
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"])
    may_ingest = guard(tokens, exporter.telemetry, "ingest")
    metrics_guard = [Depends(guard(tokens, exporter.telemetry, "read"))] \
        if settings.metrics_require_token else []

    @app.post("/api/v1/events", summary="Ingest one event, a JSON array or NDJSON",
              dependencies=[Depends(may_ingest)])
    async def ingest(request: Request) -> dict[str, int]:
        received = time.time()
        try:
            require_media_type(request, INGEST_TYPES)
            body = await read_body(request, settings.max_body_bytes)
            content_type = request.headers.get("content-type", "application/json")
            events, rows = await parser.parse(body, content_type, received)
        except ApiError as error:
            reason = {413: "oversize", 400: "malformed", 415: "malformed"}.get(
                error.status, "invalid")
            exporter.telemetry.rejected.labels(reason).inc(max(1, len(error.details)))
            raise
        result = await commit_events(exporter, events, received, rows)
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    @app.get("/api/v1/events/schema", summary="JSON Schema of one event")
    async def schema() -> dict[str, object]:
        return json_schema()

    @app.get("/metrics", summary="Prometheus exposition", dependencies=metrics_guard,
             response_class=Response, responses={200: {"content": {CONTENT_TYPE: {
                 "schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        started = time.perf_counter()
        body = await run_in_threadpool(exporter.renderer.render)
        exporter.telemetry.render_duration.observe(time.perf_counter() - started)
        return Response(body, media_type=CONTENT_TYPE)

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: the ledger answers and takes writes")
    async def ready(request: Request) -> Response:
        try:
            await run_in_threadpool(exporter.ledger.ping)
        except Exception as error:
            exporter.telemetry.ledger_errors.labels("read").inc()
            raise ApiError(503, "ledger_unavailable", "the ledger does not answer",
                           [{"reason": str(error)}]) from None
        failure = exporter.pipeline.write_failure
        if failure is not None and await run_in_threadpool(_writable_again, exporter):
            failure = None
        if failure is not None:
            full = exporter.pipeline.write_failure_full
            raise ApiError(503, "ledger_full" if full else "ledger_unwritable",
                           "the ledger refuses writes" + (" for want of space" if full else ""),
                           [{"reason": failure}])
        return JSONResponse({"status": "ready"}, headers={"X-Request-ID": request_id(request)})

    return app


def _writable_again(exporter: Exporter) -> bool:
    """After a refused write, whether the ledger takes writes now (space freed, say): a probe,
    so that /ready recovers even when no ingest arrives to prove it."""
    try:
        exporter.ledger.probe_write()
    except Exception:
        return False
    exporter.pipeline.write_failure = None
    exporter.pipeline.write_failure_full = False
    return True
