"""Claude Code's hooks: each hook input, as Claude Code hands it to a command hook, becomes
canonical events, with the little correlation hooks need (docs/integrations.md).

The actor is the session, or its sub-agent when the input has `agent_id`:

- the first hook of an agent: `agent.created` (a session's role from the request, a sub-agent's
  from its type; the model from SessionStart)
- SessionStart: idle (after a compaction the status stays); UserPromptSubmit, PreToolUse: running
- PostToolUse, PostToolUseFailure: `agent.tool_call` timed by `duration_ms`, else since its
  PreToolUse; running
- PermissionRequest, Notification (permission or input wanted): waiting
- Stop: idle; StopFailure: idle and an error `log.entry`
- SubagentStart / SubagentStop, an Agent (Task) call's end: the sub-agent running / completed
- PreCompact: an info `log.entry` naming the compaction
- SessionEnd: the session and its open sub-agents completed; any other hook: `event.ignored`

Hooks carry no time and no id of their own. Idempotency: `agent.created`, a tool call (its
`tool_use_id`) and a sub-agent's end have ids of their own; every other event's id is made of the
session, its current turn (begun by a new prompt or tool call) and the payload's digest. So the
same payload again within a turn is a duplicate (a retry), while the Stop that every turn ends
with, identical each time, is new in each turn.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from exporter.claude_code import (
    ID_PATTERN,
    SUBAGENT_ROLE,
    SUBAGENT_TOOLS,
    VIA_HOOKS,
    event_id,
    role_of,
    subagent_id,
)
from exporter.claude_code.transcripts import LONG_WINDOW, MessageUsage
from exporter.dialects.base import Canonical, file_path_of, label_name, present, text

# Correlation kept: sessions (the least recently heard forgotten first), and tool calls waiting
# for their PostToolUse over all sessions (one whose result never came is dropped in the end).
MAX_SESSIONS: Final = 10_000
MAX_PENDING_TOOLS: Final = 10_000
MAX_TURN_PAYLOADS: Final = 256
MAX_OPEN_SUBAGENT_CALLS: Final = 64
# Agents of one session remembered (announced, ended), the first heard forgotten first but the
# session itself: one forgotten is announced again (the same id: a duplicate) and SessionEnd
# does not end it.
MAX_SESSION_AGENTS: Final = 1_000
# Between two reads of a session's transcript on tool calls (Stop, compactions and the start of
# a session always read it).
CONTEXT_READ_SECONDS: Final = 10.0
_NAME: Final = re.compile(r"[A-Za-z0-9 _\-.:/@+#]{1,128}")
TURN_STARTS: Final = frozenset({"UserPromptSubmit", "PreToolUse"})
CONTEXT_HOOKS: Final = frozenset({"SessionStart", "Stop", "PreCompact", "PostCompact"})
TOOL_RESULTS: Final = frozenset({"PostToolUse", "PostToolUseFailure"})
# Notification types that mean Claude Code waits for the user (older versions send no type, and
# notified only then).
WAITING_NOTIFICATIONS: Final = frozenset({
    None, "permission_prompt", "idle_prompt", "elicitation_dialog", "elicitation_url_dialog",
    "agent_needs_input"})


class HookError(ValueError):
    """A hook input that cannot be read: which field, and why (a 422)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Hook:
    """A hook input whose common fields were checked."""

    payload: Mapping[str, Any]
    event: str
    session: str
    agent: str | None  # `agent_id`: the hook fired inside this sub-agent
    digest: str

    @property
    def actor(self) -> str:
        """The agent the hook is about: the session, or its sub-agent."""
        return self.session if self.agent is None else subagent_id(self.session, self.agent)

    def string(self, name: str) -> str | None:
        value = self.payload.get(name)
        return value if isinstance(value, str) and value else None


_TYPES: Final[dict[str, tuple[type, ...]]] = {
    "transcript_path": (str,), "tool_name": (str,), "tool_use_id": (str,), "tool_input": (dict,),
    "agent_type": (str,), "model": (str,), "source": (str,), "notification_type": (str,),
    "duration_ms": (int, float), "trigger": (str,)}


def parse_hook(payload: object) -> Hook:
    """The hook input's common fields, checked; HookError names the first field at fault."""
    if not isinstance(payload, dict):
        raise HookError("", "a hook input is a JSON object")
    event = payload.get("hook_event_name")
    if not isinstance(event, str) or _NAME.fullmatch(event) is None:
        raise HookError("hook_event_name", "must be the name of a Claude Code hook event")
    ids = {name: payload.get(name) for name in ("session_id", "agent_id")}
    if ids["session_id"] is None:
        raise HookError("session_id", "is required")
    for name, value in ids.items():
        if value is not None and not (isinstance(value, str) and ID_PATTERN.fullmatch(value)):
            raise HookError(name, "must be 1 to 64 letters, digits or _ - . @ + #")
    for name, kinds in _TYPES.items():
        value = payload.get(name)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            kind = "an object" if dict in kinds else f"a {kinds[0].__name__}"
            raise HookError(name, f"must be {kind}")
    digest = hashlib.blake2b(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
                             digest_size=12).hexdigest()
    agent = ids["agent_id"]
    return Hook(payload, event, str(ids["session_id"]), None if agent is None else str(agent),
                digest)


@dataclass(slots=True)
class _Session:
    """What the receiver remembers of one session."""

    turn: str
    seen: set[str] = field(default_factory=set)  # payload digests of the current turn
    announced: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # role, model
    status: str | None = None  # the session's, as last sent
    ended: dict[str, None] = field(default_factory=dict)  # sub-agents ended
    # Agent (Task) calls whose sub-agent no hook has named yet: tool_use_id -> (time, type).
    open_calls: OrderedDict[str, tuple[float, str | None]] = field(default_factory=OrderedDict)
    context: tuple[str, int] | None = None  # (message key, window) last sent
    context_read: float = 0.0
    long_window: bool = False  # its model carries Claude Code's `[1m]` marker

    def announce(self, agent: str, role: str, model: str | None) -> None:
        self.announced[agent] = (role, model)
        if len(self.announced) > MAX_SESSION_AGENTS:  # the first is the session (_announce)
            keys = iter(self.announced)
            next(keys)
            del self.announced[next(keys)]

    def end(self, agent: str) -> None:
        self.ended[agent] = None
        if len(self.ended) > MAX_SESSION_AGENTS:
            del self.ended[next(iter(self.ended))]


Keyed = tuple[str | None, Canonical]  # an event and its own id (None: the turn's)


class HookReceiver:
    """Translates hook inputs; holds the correlation of the sessions it hears (bounded)."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[tuple[str, str], _Session] = OrderedDict()
        self._pending: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def translate(self, hook: Hook, *, role: str, source: str | None,
                  received: float) -> list[Canonical]:
        """The canonical events of one hook input, each with its id; `role` is the session's."""
        state = self._heard(source, hook, received)
        keyed: list[Keyed] = []
        handler = _HANDLERS.get(hook.event)
        if handler is None:
            keyed.append((None, {"type": "event.ignored", "event_type": label_name(hook.event)}))
        else:
            self._announce(state, hook, role, keyed)
            handler(self, state, hook, (source or "", received), keyed)
        return self._sealed(state, hook, source, received, keyed)

    def wants_context(self, hook: Hook, *, source: str | None, received: float) -> bool:
        """Whether to read the session's transcript for its context-window fill now."""
        if hook.agent is not None or hook.string("transcript_path") is None:
            return False
        if hook.event in CONTEXT_HOOKS:
            return True
        state = self._sessions.get((source or "", hook.session))
        due = state is None or received - state.context_read >= CONTEXT_READ_SECONDS
        return hook.event in TOOL_RESULTS and due

    def context(self, hook: Hook, found: MessageUsage | None, window: int, *, role: str,
                source: str | None, received: float) -> list[Canonical]:
        """The session's context fill from its last assistant message: an `agent.usage` with
        `context_tokens` (a running total of nothing else: no counter moves, the model is never
        "unpriced" for it), and `agent.created` again when its window is known better."""
        state = self._heard(source, hook, received)
        state.context_read = received
        if state.long_window:
            window = max(window, LONG_WINDOW)
        if found is None or state.context == (found.key, window):
            return []
        keyed: list[Keyed] = []
        known = state.announced.get(hook.session)
        model = known[1] if known and known[1] else found.model  # SessionStart's, if it named one
        if window and (state.context is None or state.context[1] != window):
            keyed.append((event_id("cchook", hook.session, "window", window), {
                "type": "agent.created", "agent_id": hook.session, "role": role,
                "context_limit_tokens": window, **present(model=model)}))
        state.context = (found.key, window)
        keyed.append((event_id("cchook", hook.session, "context", found.key), {
            "type": "agent.usage", "agent_id": hook.session, "totals": True,
            "context_tokens": found.context_tokens, **present(model=model)}))
        return self._sealed(state, hook, source, received, keyed)

    # -- correlation --------------------------------------------------------------------------

    def _heard(self, source: str | None, hook: Hook, received: float) -> _Session:
        """The session's correlation, the most recently heard; a new turn on a new prompt or
        tool call."""
        key = (source or "", hook.session)
        state = self._sessions.pop(key, None)
        if state is None:
            state = _Session(turn=f"{received:.6f}")
        self._sessions[key] = state
        if len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        if hook.digest not in state.seen and hook.event in TURN_STARTS:
            state.turn, state.seen = f"{received:.6f}", set()
        if len(state.seen) < MAX_TURN_PAYLOADS:
            state.seen.add(hook.digest)
        return state

    def _announce(self, state: _Session, hook: Hook, role: str, keyed: list[Keyed]) -> None:
        """`agent.created` the first time an agent is heard, and again when its role or model
        changes (a session's model on SessionStart; a sub-agent's type)."""
        model = hook.string("model") if hook.event == "SessionStart" else None
        if model is not None and model.lower().endswith("[1m]"):
            state.long_window, model = True, model[:-4]
        window = LONG_WINDOW if state.long_window else None
        if hook.agent is None:
            self._announce_agent(state, hook.session, role, model, window, keyed)
            return
        self._announce_agent(state, hook.session, role, None, window, keyed)
        if hook.actor not in state.announced:
            self._bind(state, hook.string("agent_type"))
        self._announce_agent(state, hook.actor, role_of(hook.string("agent_type")), None, None,
                             keyed)

    def _announce_agent(self, state: _Session, agent: str, role: str, model: str | None,
                        window: int | None, keyed: list[Keyed]) -> None:
        known = state.announced.get(agent)
        if known is not None and (role == SUBAGENT_ROLE or known == (role, model or known[1])):
            return
        model = model or (known[1] if known else None)
        state.announce(agent, role, model)
        keyed.append((event_id("cchook", agent, "created", _digest(role, model, window)), {
            "type": "agent.created", "agent_id": agent, "role": role,
            **present(model=label_name(model) if model else None,
                      context_limit_tokens=window)}))

    def _bind(self, state: _Session, agent_type: str | None) -> None:
        """A sub-agent heard of by its id is the one of an open Agent call (of its type, else
        the oldest): that call's end does not make a sub-agent of its own."""
        match = next((call for call, (_, kind) in state.open_calls.items()
                      if kind == agent_type), next(iter(state.open_calls), None))
        if match is not None:
            del state.open_calls[match]

    def tool_started(self, key: tuple[str, ...], received: float) -> None:
        """A PreToolUse heard: its PostToolUse is timed from now."""
        self._pending[key] = received
        self._pending.move_to_end(key)
        if len(self._pending) > MAX_PENDING_TOOLS:
            self._pending.popitem(last=False)

    def tool_ended(self, key: tuple[str, ...]) -> float | None:
        """When the call's PreToolUse was heard, if it was."""
        return self._pending.pop(key, None)

    def _sealed(self, state: _Session, hook: Hook, source: str | None, received: float,
                keyed: list[Keyed]) -> list[Canonical]:
        sealed: list[Canonical] = []
        turn_ids = 0
        for own_id, event in keyed:
            if own_id is None:
                own_id = event_id("cchook", hook.session, state.turn, hook.digest, turn_ids)
                turn_ids += 1
            sealed.append({"timestamp": received, **event, "id": own_id, "via": VIA_HOOKS,
                           "hook": hook.event, **present(source=source)})
        return sealed


def _digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=6).hexdigest()


def _status(agent: str, status: str) -> Keyed:
    return None, {"type": "agent.status_changed", "agent_id": agent, "status": status}


def _actor_status(state: _Session, hook: Hook, status: str, keyed: list[Keyed]) -> None:
    keyed.append(_status(hook.actor, status))
    if hook.agent is None:
        state.status = status


Context = tuple[str, float]  # the source ("" for none) and the time of receipt


def _session_start(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
                   keyed: list[Keyed]) -> None:
    if hook.string("source") != "compact":  # compacted mid-turn: the turn goes on
        _actor_status(state, hook, "idle", keyed)


def _running(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
             keyed: list[Keyed]) -> None:
    _actor_status(state, hook, "running", keyed)
    if hook.agent is not None and state.status == "running":
        keyed.append(_status(hook.session, "running"))  # its sub-agent works for it


def _waiting(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
             keyed: list[Keyed]) -> None:
    if hook.event == "Notification" and \
            hook.string("notification_type") not in WAITING_NOTIFICATIONS:
        keyed.append((None, {"type": "event.ignored", "event_type": "Notification"}))
        return
    _actor_status(state, hook, "waiting", keyed)


def _tool_key(source: str, hook: Hook) -> tuple[str, ...]:
    use_id = hook.string("tool_use_id")
    if use_id is not None:
        return source, hook.session, use_id
    # Older versions name no call: the same tool with the same input, in the same agent.
    return source, hook.actor, str(hook.string("tool_name")), _digest(
        orjson.dumps(hook.payload.get("tool_input"), option=orjson.OPT_SORT_KEYS))


def _tool_started(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
                  keyed: list[Keyed]) -> None:
    source, received = context
    receiver.tool_started(_tool_key(source, hook), received)
    use_id, tool_input = hook.string("tool_use_id"), hook.payload.get("tool_input") or {}
    if hook.string("tool_name") in SUBAGENT_TOOLS and use_id is not None:
        kind = tool_input.get("subagent_type")
        state.open_calls[use_id] = (received, kind if isinstance(kind, str) else None)
        if len(state.open_calls) > MAX_OPEN_SUBAGENT_CALLS:
            state.open_calls.popitem(last=False)
    _running(receiver, state, hook, context, keyed)


def _tool_ended(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
                keyed: list[Keyed]) -> None:
    source, received = context
    started = receiver.tool_ended(_tool_key(source, hook))
    given = hook.payload.get("duration_ms")  # excludes permission prompts: preferred
    duration = given / 1000 if given is not None and given >= 0 else \
        None if started is None else max(0.0, received - started)
    failed = hook.event == "PostToolUseFailure"
    use_id = hook.string("tool_use_id")
    keyed.append((None if use_id is None else event_id("cchook", hook.session, use_id), {
        "type": "agent.tool_call", "agent_id": hook.actor,
        "tool": label_name(hook.string("tool_name") or "unknown"),
        "outcome": "error" if failed else "success",
        **present(duration_seconds=duration,
                  file_path=file_path_of(hook.payload.get("tool_input")),
                  error_type="interrupt" if failed and hook.payload.get("is_interrupt") is True
                  else None)}))
    if hook.string("tool_name") in SUBAGENT_TOOLS and use_id is not None:
        _subagent_call_ended(state, hook, use_id, keyed)
    _running(receiver, state, hook, context, keyed)


def _subagent_call_ended(state: _Session, hook: Hook, use_id: str, keyed: list[Keyed]) -> None:
    """The end of an Agent (Task) call. Its answer names the sub-agent (`agentId`) and whether
    it ran in the foreground (`completed`) or goes on in the background (`async_launched`);
    older versions name none: the call is then the sub-agent, reported when it ends."""
    response = hook.payload.get("tool_response")
    response = response if isinstance(response, Mapping) else {}
    started, kind = state.open_calls.pop(use_id, (None, None))
    named = response.get("agentId")
    if isinstance(named, str) and ID_PATTERN.fullmatch(named):
        agent = subagent_id(hook.session, named)
        role = role_of(response.get("agentType") or kind)
        if agent not in state.announced:
            state.announce(agent, role, None)
            keyed.append((event_id("cchook", agent, "created", _digest(role, None)), {
                "type": "agent.created", "agent_id": agent, "role": role}))
        if response.get("status") == "completed" and agent not in state.ended:
            _ended(state, hook, agent, keyed)
        return
    if started is None:
        return  # no Agent call open: its sub-agent was named and ends by SubagentStop
    agent = subagent_id(hook.session, use_id)
    keyed.append((event_id("cchook", agent, "created"), {
        "type": "agent.created", "agent_id": agent, "role": role_of(kind),
        "timestamp": started}))
    _ended(state, hook, agent, keyed)


def _ended(state: _Session, hook: Hook, agent: str, keyed: list[Keyed]) -> None:
    state.end(agent)
    keyed.append((event_id("cchook", agent, "completed"), {
        "type": "agent.status_changed", "agent_id": agent, "status": "completed"}))


def _stopped(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
             keyed: list[Keyed]) -> None:
    _actor_status(state, hook, "idle", keyed)
    if hook.event == "StopFailure":
        message = " ".join(part for part in (hook.string("error"), hook.string("error_details"))
                           if part) or "the turn ended on an API error"
        keyed.append((None, {"type": "log.entry", "level": "error", "agent_id": hook.actor,
                             "message": text(f"StopFailure: {message}")}))


def _subagent_stopped(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
                      keyed: list[Keyed]) -> None:
    if hook.agent is None:  # older versions: the Agent call's end reports it
        keyed.append((None, {"type": "event.ignored", "event_type": hook.event}))
        return
    _ended(state, hook, hook.actor, keyed)


def _compacting(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
                keyed: list[Keyed]) -> None:
    trigger = hook.string("trigger") or "unknown"
    keyed.append((None, {"type": "log.entry", "level": "info", "agent_id": hook.actor,
                         "message": f"context compaction ({label_name(trigger)})"}))


def _session_end(receiver: HookReceiver, state: _Session, hook: Hook, context: Context,
                 keyed: list[Keyed]) -> None:
    for agent in state.announced:
        if agent != hook.session and agent not in state.ended:
            _ended(state, hook, agent, keyed)
    _actor_status(state, hook, "completed", keyed)


Handler = Callable[[HookReceiver, _Session, Hook, Context, list[Keyed]], None]
_HANDLERS: Final[dict[str, Handler]] = {
    "SessionStart": _session_start,
    "UserPromptSubmit": _running,
    "PreToolUse": _tool_started,
    "PostToolUse": _tool_ended,
    "PostToolUseFailure": _tool_ended,
    "PermissionRequest": _waiting,
    "Notification": _waiting,
    "Stop": _stopped,
    "StopFailure": _stopped,
    "SubagentStart": _running,
    "SubagentStop": _subagent_stopped,
    "PreCompact": _compacting,
    "SessionEnd": _session_end,
}
