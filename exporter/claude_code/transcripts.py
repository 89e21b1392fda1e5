"""What a line of a Claude Code transcript says of usage, and how full the context window is.

    ~/.claude/projects/<project>/<session id>.jsonl               the session's own lines
    <project>/<session id>/subagents/[workflows/wf_<run>/]agent-<agent id>.jsonl   its sub-agents
    <project>/<session id>/subagents/.../agent-<agent id>.meta.json  {agentType, toolUseId, ...}

The traps of real transcripts, each handled here or by the importer:

- One assistant message is written as several lines (one per content block, and streaming
  snapshots) with the same `message.id` and `requestId` and the same usage, except that
  `output_tokens` grows from a placeholder to the final count: a message is counted once, from
  its line with the most output tokens (`better`).
- `<synthetic>` messages and API error lines (`isApiErrorMessage`) carry zero usage.
- `usage.cache_creation` splits the cache writes by TTL (`ephemeral_5m_input_tokens`,
  `ephemeral_1h_input_tokens`); `usage.inference_geo` is `not_available` when unset.
- Sidechain lines (`isSidechain`) are a sub-agent's, named by `agentId` (older versions wrote
  them into the session's file without one).
- Lines that are not JSON, and sidecar lines (`summary`, `file-history-snapshot`, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from exporter.dialects.base import json_object, present
from exporter.pricing import PriceTable

SYNTHETIC_MODEL: Final = "<synthetic>"
# Claude Code's `[1m]` marker names the 1M-token context window of a model whose standard
# window is smaller; a session seen above its model's window is on it too.
LONG_WINDOW: Final = 1_000_000
SERVICE_TIERS: Final = ("standard", "priority", "batch")
SPEEDS: Final = ("standard", "fast")
# The last assistant line is searched for in the end of the file, growing to this much: a line
# can be long (a tool's output), but the context fill must not cost a read of the whole file.
FIRST_TAIL_BYTES: Final = 256 * 1024
MAX_TAIL_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MessageUsage:
    """The usage of one assistant line."""

    key: str  # `message.id:requestId`, the same on every line of the message, in every file
    model: str | None
    timestamp: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    # The TTL split of the cache writes, when the line has one.
    cache_creation_5m_tokens: int | None
    cache_creation_1h_tokens: int | None
    complete: bool  # stop_reason is set: not a snapshot taken mid-stream
    sidechain: bool
    agent: str | None  # agentId: the sub-agent that wrote it
    options: Mapping[str, Any]  # service_tier, speed, inference_geo, cost_usd

    @property
    def context_tokens(self) -> int:
        """The prompt this request sent: the context window's fill."""
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens

    def usage_fields(self) -> dict[str, Any]:
        """The canonical `agent.usage` fields of this line."""
        return {
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
            **present(model=self.model, cache_creation_5m_tokens=self.cache_creation_5m_tokens,
                      cache_creation_1h_tokens=self.cache_creation_1h_tokens),
            "context_tokens": self.context_tokens, **self.options,
        }


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _key(line: Mapping[str, Any], message: Mapping[str, Any]) -> str | None:
    message_id, request_id = message.get("id"), line.get("requestId")
    if isinstance(message_id, str) and message_id:
        return f"{message_id}:{request_id}" if isinstance(request_id, str) else message_id
    uuid = line.get("uuid")
    return uuid if isinstance(uuid, str) and uuid else None


def _options(line: Mapping[str, Any], usage: Mapping[str, Any]) -> dict[str, Any]:
    tier, speed, geo = usage.get("service_tier"), usage.get("speed"), usage.get("inference_geo")
    cost = line.get("costUSD")  # written by Claude Code before 1.0.9
    return present(
        service_tier=tier if tier in SERVICE_TIERS else None,
        speed=speed if speed in SPEEDS else None,
        inference_geo=geo if isinstance(geo, str) and geo.isalnum() and geo != "not_available"
        else None,
        cost_usd=cost if isinstance(cost, int | float) and not isinstance(cost, bool)
        and cost >= 0 else None)


def message_usage(line: Mapping[str, Any]) -> MessageUsage | None:
    """The usage of an assistant line; None for any other line and for one with nothing to
    count (synthetic and API error messages)."""
    message = line.get("message")
    if line.get("type") != "assistant" or not isinstance(message, Mapping):
        return None
    usage, model = message.get("usage"), message.get("model")
    key = _key(line, message)
    if not isinstance(usage, Mapping) or key is None or model == SYNTHETIC_MODEL \
            or line.get("isApiErrorMessage") is True:
        return None
    split = usage.get("cache_creation")
    five, hour = (_count(split, "ephemeral_5m_input_tokens"),
                  _count(split, "ephemeral_1h_input_tokens")) \
        if isinstance(split, Mapping) else (None, None)
    creation = usage.get("cache_creation_input_tokens")
    found = MessageUsage(
        key=key, model=model if isinstance(model, str) and model else None,
        timestamp=line.get("timestamp") if isinstance(line.get("timestamp"), str) else None,
        input_tokens=_count(usage, "input_tokens"), output_tokens=_count(usage, "output_tokens"),
        cache_read_tokens=_count(usage, "cache_read_input_tokens"),
        cache_creation_tokens=_count(usage, "cache_creation_input_tokens")
        if creation is not None else (five or 0) + (hour or 0),
        cache_creation_5m_tokens=five, cache_creation_1h_tokens=hour,
        complete=message.get("stop_reason") is not None, sidechain=line.get("isSidechain") is True,
        agent=line.get("agentId") if isinstance(line.get("agentId"), str) else None,
        options=_options(line, usage))
    nothing = not (found.context_tokens or found.output_tokens)
    return None if nothing else found


def better(kept: MessageUsage, line: MessageUsage) -> MessageUsage:
    """Of two lines of one message, the one to count: the most output tokens (the final
    snapshot), the later on a tie."""
    return kept if kept.output_tokens > line.output_tokens else line


def json_lines(data: bytes) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, the line as an object or None when it is not a JSON object); blank lines
    are left out."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, json_object(raw)


def last_usage(descriptor: int) -> MessageUsage | None:
    """The last assistant line of the session itself (not a sidechain) in the open transcript,
    read from its end."""
    size = os.fstat(descriptor).st_size
    length = FIRST_TAIL_BYTES
    while True:
        start = max(0, size - length)
        data = os.pread(descriptor, size - start, start)
        if start > 0:  # the first line may be cut: it starts before the part read
            data = data[data.find(b"\n") + 1:] if b"\n" in data else b""
        lines = [line for _, line in json_lines(data) if line is not None]
        for line in reversed(lines):
            found = message_usage(line)
            if found is not None and not found.sidechain:
                return found
        if start == 0 or length >= MAX_TAIL_BYTES:
            return None
        length *= 4


def context_limit(model: str | None, observed: int, prices: PriceTable) -> int:
    """The context window of a session on `model` that sent `observed` tokens; 0: unknown."""
    if model is None:
        return 0
    if model.strip().lower().endswith("[1m]"):
        return LONG_WINDOW
    price = prices.lookup(model)
    window = price.context_window if price is not None else 0
    return LONG_WINDOW if 0 < window < observed else window
