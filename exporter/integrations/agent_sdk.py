"""An agent written on the Claude Agent SDK (`claude-agent-sdk`), reporting from its own process.

    reporter = AgentSdkReporter(ExporterClient(url, token).emit, "reviewer-1", role="REVIEWER")
    options = ClaudeAgentOptions(hooks=reporter.hooks())          # tool calls, sub-agents
    async for message in reporter.watch(query(prompt=..., options=options)):
        ...                                                       # usage, status, result

Read from claude-agent-sdk 0.2.189 (`types.py`, `_internal/message_parser.py`,
`_internal/query.py`). The SDK is not a dependency of the exporter: it is imported only where
its objects are handled, which is in a process that already runs it.

- Usage: the CLI writes one API response as one line per content block, sharing `message.id`
  and usage, the output count growing from a placeholder to the final one (`_internal/
  sessions.py` says so of its transcripts; its stream is the same lines), and the SDK's parser
  makes an `AssistantMessage` of each line, `message_id` kept, nothing merged. Each message
  counts the increase of its counts over what was counted for its id: once in all, live, and a
  repeat counts nothing.
- Cost: the messages carry none; the exporter prices their tokens. The `ResultMessage`'s usage
  and `total_cost_usd` follow as running totals (`totals: true`): only what they exceed the
  messages by moves a counter. An agent's cost is so the larger of the table's price of its
  messages and the SDK's own total, never their sum.
- Tool calls come from the hooks when `hooks()` is in the options (with Claude Code's own
  durations, failures and sub-agents), else from the stream's `ToolUseBlock` and
  `ToolResultBlock` pairs. Either way a call's id is its `tool_use_id`: it counts once.

Nothing here raises into the agent: a failing sink is logged and the agent goes on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from exporter.claude_code.transcripts import MessageUsage, message_usage
from exporter.dialects.base import file_path_of, label_name, present, text
from exporter.integrations.emitter import Emitter, Sink

if TYPE_CHECKING:
    from claude_agent_sdk import (
        AssistantMessage,
        HookContext,
        HookInput,
        HookJSONOutput,
        HookMatcher,
        ResultMessage,
        UserMessage,
    )
    from claude_agent_sdk.types import HookEvent

log = logging.getLogger(__name__)

VIA: Final = "agent_sdk"
ROLE: Final = "AGENT_SDK"
# What is remembered (message counts, calls in flight) is bounded: a long-lived agent must not
# grow without end. A repeat older than this many messages would count again.
MAX_REMEMBERED: Final = 10_000
Message = TypeVar("Message")
_COUNTS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")


@dataclass(slots=True)
class _Call:
    tool: str
    actor: str
    started: float
    file_path: str | None


class AgentSdkReporter:
    """Reports one SDK agent: `hooks()` for `ClaudeAgentOptions`, `observe(message)` (or
    `watch(stream)`) for the messages `query()` or `ClaudeSDKClient` yields.

    A sub-agent the hooks name (`agent_id` in a hook input) is an agent of its own,
    `{agent_id}:{sub-agent id}`, role its `agent_type`; its usage is counted on this agent, as the
    stream does not say which sub-agent a message is of.
    """

    def __init__(self, sink: Sink, agent_id: str, *, role: str = ROLE,
                 task_id: str | None = None, source: str | None = None) -> None:
        self.agent_id = agent_id
        self.role = role
        self.task_id = task_id
        self._emit = Emitter(sink, source, VIA)
        self._key = f"{source}\x1f{agent_id}"
        self._lock = threading.Lock()
        self._model: str | None = None
        self._hooked = False
        self._status: dict[str, str] = {}
        self._counted: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        self._reported: OrderedDict[str, None] = OrderedDict()
        self._results: OrderedDict[str, tuple[tuple[int, ...], float]] = OrderedDict()
        self._sent_totals: tuple[tuple[int, ...], float] = ((0, 0, 0, 0), 0.0)

    # -- hooks ----------------------------------------------------------------------------

    def hooks(self) -> dict[HookEvent, list[HookMatcher]]:
        """`ClaudeAgentOptions(hooks=...)`: every tool call, its duration and outcome, and
        sub-agents. Add your own matchers to the lists; each callback answers `{}` (no say)."""
        from claude_agent_sdk import HookMatcher

        self._hooked = True
        return {event: [HookMatcher(hooks=[self._hook])] for event in (
            "PreToolUse", "PostToolUse", "PostToolUseFailure", "SubagentStart", "SubagentStop",
            "Stop")}

    async def _hook(self, input_data: HookInput, tool_use_id: str | None,
                    context: HookContext) -> HookJSONOutput:
        try:
            self.on_hook(cast(Mapping[str, Any], input_data), tool_use_id)
        except Exception:  # a hook that raises could block the agent's tool call
            log.exception("could not report a %s hook", input_data.get("hook_event_name"))
        return {}

    def on_hook(self, data: Mapping[str, Any], tool_use_id: str | None = None) -> None:
        """One hook input, as the SDK passes it to a hook callback."""
        event = data.get("hook_event_name")
        actor = self._actor(data)
        use_id = data.get("tool_use_id") or tool_use_id
        if event == "PreToolUse" and isinstance(use_id, str):
            self._set_status(actor, "running")
            self._remember_call(use_id, str(data.get("tool_name")), actor, data.get("tool_input"))
        elif event in ("PostToolUse", "PostToolUseFailure") and isinstance(use_id, str):
            self._hook_call_ended(data, use_id, actor, failed=event == "PostToolUseFailure")
        elif event == "SubagentStart":
            self._set_status(actor, "running")
        elif event == "SubagentStop":
            self._set_status(actor, "completed")
        elif event == "Stop":
            self._set_status(actor, "idle")

    def _actor(self, data: Mapping[str, Any]) -> str:
        """The agent a hook is of: this one, or the sub-agent its input names (announced)."""
        sub_agent = data.get("agent_id")
        if not isinstance(sub_agent, str) or not sub_agent:
            self._announce()
            return self.agent_id
        actor = f"{self.agent_id}:{sub_agent}"[:128]
        agent_type = data.get("agent_type")
        role = label_name(agent_type).upper() if isinstance(agent_type, str) and agent_type \
            else "SUBAGENT"
        self._announce(actor, role)
        return actor

    def _hook_call_ended(self, data: Mapping[str, Any], use_id: str, actor: str, *,
                         failed: bool) -> None:
        call = self._forget_call(use_id)
        duration_ms = data.get("duration_ms")
        duration: float | None = None if call is None else time.monotonic() - call.started
        if isinstance(duration_ms, int | float) and not isinstance(duration_ms, bool) \
                and duration_ms >= 0:  # Claude Code's own: without a permission prompt's wait
            duration = duration_ms / 1000
        self._tool_call(use_id, actor, str(data.get("tool_name")), failed=failed,
                        duration=duration, file_path=file_path_of(data.get("tool_input")),
                        interrupted=data.get("is_interrupt") is True)

    # -- the message stream ---------------------------------------------------------------

    async def watch(self, messages: AsyncIterable[Message]) -> AsyncIterator[Message]:
        """Yields the stream's messages unchanged, each observed first. An error of the stream
        itself marks the agent failed and is raised on."""
        try:
            async for message in messages:
                self.observe(message)
                yield message
        except Exception as error:
            self._failed(f"{type(error).__name__}: {error}")
            raise

    def observe(self, message: object) -> None:
        """One message of the stream; any other object is ignored."""
        try:
            self._observe(message)
        except Exception:
            log.exception("could not report a %s", type(message).__name__)

    def _observe(self, message: object) -> None:
        from claude_agent_sdk import AssistantMessage, ResultMessage, SystemMessage, UserMessage

        if isinstance(message, SystemMessage) and message.subtype == "init":
            model = message.data.get("model")
            self._model = label_name(model) if isinstance(model, str) and model else None
            self._announce()
            self._set_status(self.agent_id, "running")
        elif isinstance(message, AssistantMessage):
            self._announce()
            self._set_status(self.agent_id, "running")
            self._assistant(message)
        elif isinstance(message, UserMessage) and not self._hooked:
            self._tool_results(message)
        elif isinstance(message, ResultMessage):
            self._announce()
            self._result(message)

    def _assistant(self, message: AssistantMessage) -> None:
        from claude_agent_sdk import ToolUseBlock

        if message.error is not None:
            self._emit("log.entry", agent_id=self.agent_id, level="error",
                       message=f"API error: {message.error}")
        usage = message_usage({
            "type": "assistant", "uuid": message.uuid,
            "isApiErrorMessage": message.error is not None,
            "isSidechain": message.parent_tool_use_id is not None,
            "message": {"id": message.message_id, "model": message.model,
                        "usage": message.usage, "stop_reason": message.stop_reason}})
        if usage is not None:
            self._usage(usage)
        if not self._hooked:
            for block in message.content:
                if isinstance(block, ToolUseBlock):
                    self._remember_call(block.id, block.name, self.agent_id, block.input)

    def _usage(self, usage: MessageUsage) -> None:
        """The increase of a message's counts over those already counted for its id."""
        counts = (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                  usage.cache_creation_tokens, usage.cache_creation_1h_tokens or 0)
        with self._lock:
            before = self._counted.get(usage.key, (0,) * len(counts))
            after = tuple(max(old, new) for old, new in zip(before, counts, strict=True))
            if after == before:
                return
            _remember(self._counted, usage.key, after)
        *increase, increase_1h = [new - old for old, new in zip(before, after, strict=True)]
        fields = usage.usage_fields()
        fields.update(zip(_COUNTS, increase, strict=True))
        fields.pop("cache_creation_5m_tokens", None)  # the total and the 1-hour part suffice
        if usage.sidechain:  # a sub-agent's prompt is not this agent's context window
            fields.pop("context_tokens")
        if usage.cache_creation_1h_tokens is not None:
            fields["cache_creation_1h_tokens"] = increase_1h
        # A part after the first adds output only: it is priced at the base rates even when
        # the message's prompt was in a long-context tier (over 200k tokens).
        self._emit("agent.usage", id=self._id("usage", usage.key, *after),
                   agent_id=self.agent_id, **fields)

    def _tool_results(self, message: UserMessage) -> None:
        from claude_agent_sdk import ToolResultBlock

        if isinstance(message.content, str):
            return
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                call = self._forget_call(block.tool_use_id)
                if call is not None:
                    self._tool_call(block.tool_use_id, call.actor, call.tool,
                                    failed=block.is_error is True,
                                    duration=time.monotonic() - call.started,
                                    file_path=call.file_path)

    def _result(self, result: ResultMessage) -> None:
        """The result's usage and cost as running totals, then the agent's end."""
        totals = self._result_totals(result)
        if totals is not None:
            counts, cost = totals
            if any(counts):  # first: the table prices what the messages did not show
                self._emit("agent.usage", id=self._id("result-usage", *counts),
                           agent_id=self.agent_id, totals=True,
                           **dict(zip(_COUNTS, counts, strict=True)))
            if cost:
                self._emit("agent.usage", id=self._id("result-cost", cost),
                           agent_id=self.agent_id, totals=True, cost_usd=cost)
        if result.is_error:
            self._failed(_result_error(result))
        else:
            self._set_status(self.agent_id, "completed")

    def _result_totals(self, result: ResultMessage) -> tuple[tuple[int, ...], float] | None:
        """The agent's totals by its results; None when they have not changed. A session's
        results are running totals of it; several sessions (one per `query()`) add up."""
        usage = message_usage({"type": "assistant", "uuid": "result",
                               "message": {"usage": result.usage}}) if result.usage else None
        counts = (0, 0, 0, 0) if usage is None else (
            usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
            usage.cache_creation_tokens)
        cost = result.total_cost_usd if isinstance(result.total_cost_usd, int | float) else 0.0
        with self._lock:
            old_counts, old_cost = self._results.get(result.session_id, ((0, 0, 0, 0), 0.0))
            _remember(self._results, result.session_id, (
                tuple(max(old, new) for old, new in zip(old_counts, counts, strict=True)),
                max(old_cost, cost)))
            summed = tuple(sum(kept[0][index] for kept in self._results.values())
                           for index in range(4))
            totals = (summed, sum(kept[1] for kept in self._results.values()))
            if totals == self._sent_totals:
                return None
            self._sent_totals = totals
        return totals

    # -- what both use --------------------------------------------------------------------

    def _announce(self, actor: str | None = None, role: str | None = None) -> None:
        """`agent.created` the first time an agent is heard of."""
        actor = actor or self.agent_id
        with self._lock:
            if actor in self._status:
                return
            self._status[actor] = ""
        self._emit("agent.created", id=self._id("created", actor), agent_id=actor,
                   role=role or self.role, **present(
                       model=self._model if actor == self.agent_id else None,
                       task_id=self.task_id))

    def _set_status(self, actor: str, status: str) -> None:
        with self._lock:
            if self._status.get(actor) == status:
                return  # a repeat would add a ledger row and change nothing
            self._status[actor] = status
        self._emit("agent.status_changed", agent_id=actor, status=status)

    def _failed(self, error: str) -> None:
        self._announce()
        self._emit("log.entry", agent_id=self.agent_id, level="error", message=error)
        self._set_status(self.agent_id, "failed")

    def _remember_call(self, use_id: str, tool: str, actor: str, tool_input: object) -> None:
        with self._lock:
            _remember(self._calls, use_id, _Call(tool, actor, time.monotonic(),
                                                 file_path_of(tool_input)))

    def _forget_call(self, use_id: str) -> _Call | None:
        with self._lock:
            return self._calls.pop(use_id, None)

    def _tool_call(self, use_id: str, actor: str, tool: str, *, failed: bool,
                   duration: float | None, file_path: str | None,
                   interrupted: bool = False) -> None:
        with self._lock:
            if use_id in self._reported:
                return
            _remember(self._reported, use_id, None)
        self._emit("agent.tool_call", id=self._id("tool", use_id), agent_id=actor,
                   tool=label_name(tool) or "unknown", outcome="error" if failed else "success",
                   **present(duration_seconds=duration, file_path=file_path,
                             error_type="interrupt" if interrupted else None))

    def _id(self, *parts: object) -> str:
        """An event id made of this agent and what the event says: a repeat is a duplicate."""
        digest = hashlib.blake2b("\x1f".join(map(str, (self._key, *parts))).encode(),
                                 digest_size=16).hexdigest()
        return f"{VIA}:{parts[0]}:{digest}"


def _remember(memory: OrderedDict[str, Any], key: str, value: Any) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > MAX_REMEMBERED:
        memory.popitem(last=False)


def _result_error(result: ResultMessage) -> str:
    """What went wrong, in the result's own words."""
    words = "; ".join(result.errors or []) or text(result.result) or result.subtype
    status = f" (HTTP {result.api_error_status})" if result.api_error_status else ""
    return text(f"{result.subtype}{status}: {words}") or result.subtype
