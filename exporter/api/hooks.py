"""`POST /api/v1/hooks/claude-code`: Claude Code's hook inputs, as its hooks pass them."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Final

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from exporter.api.deps import commit_events, guard, json_body
from exporter.api.errors import ApiError
from exporter.api.ingest import MAX_PROBLEMS
from exporter.claude_code import ID_PATTERN
from exporter.claude_code.hooks import Hook, HookError, HookReceiver, parse_hook
from exporter.claude_code.paths import PathRefusedError, TranscriptRoots
from exporter.claude_code.transcripts import MessageUsage, context_limit, last_usage
from exporter.events import MAX_PATH, validate_batch
from exporter.service import Exporter
from exporter.tokens import Token, TokenRegistry

log = logging.getLogger(__name__)

# A hook input carries the tool's input and answer (a file read, a command's output); Claude
# Code cuts those to tens of kilobytes, a Write's content excepted.
MAX_HOOK_BYTES: Final = 1024 * 1024
_NAME: Final = re.compile(r"[A-Za-z0-9 _\-.:/@+#]{1,128}")
_ANSWERS: Final = {400: {"description": "the body is not JSON"},
                   401: {"description": "no or unknown token"},
                   403: {"description": "the token's role may not ingest"},
                   413: {"description": "the body is larger than 1 MiB"},
                   415: {"description": "the body is not application/json"},
                   422: {"description": "not a hook input; nothing was stored"}}
_ID: Final = {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"}
# Any other field Claude Code adds is taken as it is: MAX_HOOK_BYTES bounds the whole.
_BODY: Final = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["session_id", "hook_event_name"],
    "description": "A Claude Code hook input, unchanged",
    "properties": {"session_id": _ID, "agent_id": _ID,
                   "hook_event_name": {"type": "string", "pattern": f"^{_NAME.pattern}$"},
                   "transcript_path": {"type": "string", "maxLength": MAX_PATH}}}}}}}


def hooks_router(exporter: Exporter, tokens: TokenRegistry) -> APIRouter:
    """The Claude Code hooks receiver (docs/integrations.md#claude-code)."""
    settings = exporter.settings
    receiver = HookReceiver()
    roots = TranscriptRoots(settings.transcript_roots)
    router = APIRouter(prefix="/api/v1/hooks", responses=_ANSWERS)  # type: ignore[arg-type]
    may_ingest = Depends(guard(tokens, exporter.telemetry, "ingest"))

    def refused(status: int, code: str, message: str, field: str, reason: str) -> ApiError:
        exporter.telemetry.rejected.labels("invalid" if status == 422 else "malformed").inc()
        return ApiError(status, code, message, [{"field": field, "reason": reason}])

    def read_context(hook: Hook) -> tuple[MessageUsage | None, int]:
        try:
            descriptor = roots.open(str(hook.string("transcript_path")))
        except PathRefusedError as error:
            log.warning("transcript not read: %s", error)
            return None, 0
        try:
            found = last_usage(descriptor)
        finally:
            os.close(descriptor)
        if found is None:
            return None, 0
        return found, context_limit(found.model, found.context_tokens, exporter.state.prices)

    @router.post("/claude-code", summary="Take one Claude Code hook input (any hook event)",
                 openapi_extra=_BODY)
    async def claude_code(request: Request, role: str | None = Query(None, max_length=128),
                          source: str | None = Query(None, max_length=128),
                          _token: Token = may_ingest) -> dict[str, int]:
        received = time.time()
        try:
            payload, _ = await json_body(request, MAX_HOOK_BYTES)
        except ApiError as error:
            exporter.telemetry.rejected.labels(
                "oversize" if error.status == 413 else "malformed").inc()
            raise
        role = role or request.headers.get("x-orchestrator-role") or settings.claude_code_role
        source = source or request.headers.get("x-orchestrator-source")
        for name, value in (("role", role), ("source", source)):
            if value is not None and _NAME.fullmatch(value) is None:
                raise refused(422, "invalid_hook", f"{name}: not a valid name", name,
                              "1 to 128 letters, digits, space and _ - . : / @ + #")
        try:
            hook = parse_hook(payload)
        except HookError as error:
            raise refused(422, "invalid_hook", f"not a Claude Code hook input: {error}",
                          error.field, error.reason) from None
        role = role.upper()
        raws = receiver.translate(hook, role=role, source=source, received=received)
        if roots.enabled and receiver.wants_context(hook, source=source, received=received):
            found, window = await run_in_threadpool(read_context, hook)
            raws += receiver.context(hook, found, window, role=role, source=source,
                                     received=received)
        events, problems = validate_batch(raws, received, max_tokens=settings.max_event_tokens)
        if problems:
            details = [{"field": problem.field, "reason": problem.reason,
                        "event": raws[problem.index]["type"]} for problem in problems]
            exporter.telemetry.rejected.labels("invalid").inc(len(problems))
            raise ApiError(422, "invalid_hook", "the hook input makes invalid events; nothing "
                           "was stored", details[:MAX_PROBLEMS])
        result = await commit_events(exporter, events, received)
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    return router
