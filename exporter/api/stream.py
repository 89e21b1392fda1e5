"""The live stream over HTTP: Server-Sent Events (`/api/v1/stream`) and a WebSocket
(`/api/v1/ws`), both fed by the EventHub (exporter/reads/stream.py).

SSE: each event is `id: <seq>` and `data: <the event as stored>`; a reconnect resumes from
`Last-Event-ID` (or `after=`). Heartbeats are comments. A subscriber cut off for reading too
slowly gets `event: cutoff` with `{"resume_after": seq}` before the end of the response.
WebSocket: one JSON message per event, `{"seq": n, "event": {...}}`; `{"type": "heartbeat",
"seq": n}` when quiet; `{"type": "cutoff", "resume_after": n}` then close code 1013.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Final

import orjson
from fastapi import APIRouter, Depends, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from exporter.api.deps import guard
from exporter.api.errors import ApiError
from exporter.api.guards import RateLimiter
from exporter.events import EVENT_TYPES
from exporter.reads.stream import (
    Chunk,
    EventHub,
    StreamFilter,
    Subscriber,
    TooManySubscribersError,
)
from exporter.service import Exporter
from exporter.tokens import TokenRegistry

NAME: Final = 128
TRY_AGAIN_LATER: Final = 1013
POLICY_VIOLATION: Final = 1008
Name = Annotated[str | None, Query(max_length=NAME)]
Types = Annotated[str | None, Query(max_length=1024, description="event types, comma-separated")]
After = Annotated[int | None, Query(ge=0, le=2**62, description="resume after this seq")]


def parse_filter(types: str | None, agent_id: str | None, task_id: str | None,
                 run_id: str | None) -> StreamFilter:
    names = frozenset(part.strip() for part in (types or "").split(",") if part.strip())
    unknown = sorted(names - set(EVENT_TYPES))
    if unknown:
        raise ApiError(422, "invalid_query", "types must name event types, comma-separated",
                       [{"field": "types", "reason": f"unknown: {', '.join(unknown)[:200]}"}])
    return StreamFilter(names, agent_id, task_id, run_id)


def _resume_point(after: int | None, last_event_id: str | None) -> int | None:
    if last_event_id is not None:
        if not last_event_id.isdigit() or len(last_event_id) > 19:
            raise ApiError(422, "invalid_query", "Last-Event-ID must be a seq this stream sent",
                           [{"field": "Last-Event-ID", "reason": "must be digits"}])
        return int(last_event_id)
    return after


def _sse(batch: list[Chunk]) -> bytes:
    return batch[0].sse() if len(batch) == 1 else b"".join(chunk.sse() for chunk in batch)


def stream_router(exporter: Exporter, tokens: TokenRegistry, limiter: RateLimiter,
                  hub: EventHub) -> APIRouter:
    router = APIRouter(prefix="/api/v1")
    settings = exporter.settings
    may_read = Depends(guard(tokens, exporter.telemetry, "read", limiter))

    def subscribe(where: StreamFilter, after: int | None) -> Subscriber:
        try:
            return hub.subscribe(where, after)
        except TooManySubscribersError as error:
            raise ApiError(503, "too_many_subscribers", str(error),
                           headers={"Retry-After": "5"}) from None

    @router.get("/stream", summary="Every accepted event, live (Server-Sent Events)",
                dependencies=[may_read],
                responses={200: {"content": {"text/event-stream": {"schema": {
                    "type": "string"}}}},
                           401: {"description": "no or unknown token"},
                           422: {"description": "a filter or resume point is invalid"},
                           503: {"description": "too many subscribers (Retry-After)"}})
    async def stream(types: Types = None, agent_id: Name = None, task_id: Name = None,
                     run_id: Name = None, after: After = None,
                     last_event_id: Annotated[str | None, Header(max_length=32)] = None
                     ) -> StreamingResponse:
        where = parse_filter(types, agent_id, task_id, run_id)
        subscriber = subscribe(where, _resume_point(after, last_event_id))

        async def frames() -> AsyncIterator[bytes]:
            try:
                yield b": connected at %d\n\n" % subscriber.position
                async for batch in hub.events(subscriber, settings.stream_heartbeat_seconds):
                    yield b": heartbeat\n\n" if batch is None else _sse(batch)
                if subscriber.cut_off:
                    yield b"event: cutoff\ndata: %s\n\n" % orjson.dumps(
                        {"resume_after": subscriber.position})
            finally:
                hub.unsubscribe(subscriber)

        # The background task also unsubscribes when the client left before the first frame
        # (the generator's `finally` never runs then); unsubscribing twice is harmless.
        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"},
                                 background=BackgroundTask(hub.unsubscribe, subscriber))

    @router.websocket("/ws")
    async def websocket(socket: WebSocket, types: Types = None, agent_id: Name = None,
                        task_id: Name = None, run_id: Name = None,
                        after: After = None) -> None:
        scheme, _, secret = socket.headers.get("authorization", "").partition(" ")
        token = tokens.authenticate(secret) if scheme.lower() == "bearer" and secret else None
        # Accepted first, so that a refusal reaches the client as a close code and reason
        # (closing before accepting answers a bare HTTP 403).
        await socket.accept()
        if token is None or not token.may("read"):
            exporter.telemetry.rejected.labels("unauthorized").inc()
            await socket.close(POLICY_VIOLATION, "a bearer token with the viewer role is needed")
            return
        try:
            where = parse_filter(types, agent_id, task_id, run_id)
            subscriber = hub.subscribe(where, after)
        except ApiError as error:
            await socket.close(POLICY_VIOLATION, error.message[:120])
            return
        except TooManySubscribersError as error:
            await socket.close(TRY_AGAIN_LATER, str(error)[:120])
            return
        try:
            async for batch in hub.events(subscriber, settings.stream_heartbeat_seconds):
                if batch is None:
                    await socket.send_text(orjson.dumps(
                        {"type": "heartbeat", "seq": subscriber.position}).decode())
                    continue
                for chunk in batch:
                    for message in chunk.messages():
                        await socket.send_text(message)
            if subscriber.cut_off:
                await socket.send_text(orjson.dumps(
                    {"type": "cutoff", "resume_after": subscriber.position}).decode())
                await socket.close(TRY_AGAIN_LATER, "too slow; resume after resume_after")
        except WebSocketDisconnect:
            pass
        finally:
            hub.unsubscribe(subscriber)

    return router
