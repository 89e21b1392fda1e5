"""The hooks receiver in-process: the shapes of older and newer Claude Code versions (no
tool_use_id, no agent_id, background sub-agents), hooks nobody maps, and what it keeps bounded."""

from __future__ import annotations

from typing import Any

from exporter.claude_code import hooks
from exporter.claude_code.hooks import HookReceiver, parse_hook
from exporter.events import validate_batch

SESSION = "2b4d6f8a-0c1e-4a3b-8d5f-7a9c1e3b5d70"
NOW = 1_790_000_000.0


def translate(receiver: HookReceiver, at: float, **payload: Any) -> list[dict[str, Any]]:
    events = receiver.translate(parse_hook({"session_id": SESSION, **payload}),
                                role="BUILDER", source=None, received=at)
    assert not validate_batch(events, at)[1]
    return events


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def test_an_older_version_without_ids_still_times_its_calls_and_reports_its_sub_agent():
    receiver = HookReceiver()
    task = {"tool_name": "Task", "tool_input": {"description": "Read staging logs",
                                                "prompt": "Read logs/staging.log",
                                                "subagent_type": "general-purpose"}}
    translate(receiver, NOW, hook_event_name="PreToolUse", tool_use_id="toolu_01T", **task)
    bash = {"tool_name": "Bash", "tool_input": {"command": "ls"}}
    translate(receiver, NOW + 1, hook_event_name="PreToolUse", **bash)
    ended = translate(receiver, NOW + 3.5, hook_event_name="PostToolUse",
                      tool_response={"stdout": "a b"}, **bash)
    assert of_type(ended, "agent.tool_call")[0]["duration_seconds"] == 2.5
    # SubagentStop without agent_id tells nothing the Task call's end does not.
    assert of_type(translate(receiver, NOW + 9, hook_event_name="SubagentStop",
                             stop_hook_active=False), "event.ignored")
    done = translate(receiver, NOW + 10, hook_event_name="PostToolUse", tool_use_id="toolu_01T",
                     tool_response={"content": [{"type": "text", "text": "DEPLOY_KEY"}]}, **task)
    created = of_type(done, "agent.created")
    assert [(event["agent_id"], event["role"], event["timestamp"]) for event in created] == \
        [(f"{SESSION}:toolu_01T", "GENERAL-PURPOSE", NOW)]
    assert {"agent_id": f"{SESSION}:toolu_01T", "status": "completed"}.items() <= \
        of_type(done, "agent.status_changed")[0].items()


def test_a_background_sub_agent_is_running_until_its_subagent_stop():
    receiver = HookReceiver()
    agent = {"tool_name": "Agent", "tool_use_id": "toolu_01B",
             "tool_input": {"prompt": "Watch CI", "description": "CI", "subagent_type": "Plan"}}
    translate(receiver, NOW, hook_event_name="PreToolUse", **agent)
    launched = translate(receiver, NOW + 1, hook_event_name="PostToolUse", **agent,
                         tool_response={"status": "async_launched", "agentId": "a0123456789abcdef",
                                        "description": "CI", "prompt": "Watch CI"})
    sub = f"{SESSION}:a0123456789abcdef"
    assert [(event["agent_id"], event["role"]) for event in of_type(launched, "agent.created")] \
        == [(sub, "PLAN")]
    assert sub not in {event["agent_id"] for event in of_type(launched, "agent.status_changed")}
    stopped = translate(receiver, NOW + 60, hook_event_name="SubagentStop",
                        agent_id="a0123456789abcdef", agent_type="Plan")
    assert [(event["agent_id"], event["status"]) for event in
            of_type(stopped, "agent.status_changed")] == [(sub, "completed")]


def test_a_1m_model_sets_the_long_window_and_keeps_its_name_pricable():
    created = of_type(translate(HookReceiver(), NOW, hook_event_name="SessionStart",
                                source="startup", model="claude-opus-4-6[1m]"), "agent.created")
    assert [(event["model"], event["context_limit_tokens"]) for event in created] == \
        [("claude-opus-4-6", 1_000_000)]


def test_hooks_nobody_maps_are_stored_as_ignored_never_refused():
    receiver = HookReceiver()
    for name in ("TaskCreated", "CwdChanged", "PostCompact"):
        events = translate(receiver, NOW, hook_event_name=name, task_id="t-1", old_cwd="/a")
        assert [event["event_type"] for event in events] == [name]
    auth = translate(receiver, NOW, hook_event_name="Notification",
                     notification_type="auth_success", message="Logged in")
    assert of_type(auth, "event.ignored") and not of_type(auth, "agent.status_changed")


def test_every_turn_ends_with_a_new_stop_but_a_retry_keeps_its_ids():
    receiver = HookReceiver()
    first = translate(receiver, NOW, hook_event_name="Stop", stop_hook_active=False)
    retry = translate(receiver, NOW + 0.2, hook_event_name="Stop", stop_hook_active=False)
    translate(receiver, NOW + 30, hook_event_name="UserPromptSubmit", prompt="go on")
    next_turn = translate(receiver, NOW + 40, hook_event_name="Stop", stop_hook_active=False)
    assert [event["id"] for event in of_type(first, "agent.status_changed")] == \
        [event["id"] for event in retry]
    assert of_type(first, "agent.status_changed")[0]["id"] != \
        of_type(next_turn, "agent.status_changed")[0]["id"]


def test_the_correlation_it_keeps_is_bounded(monkeypatch):
    monkeypatch.setattr(hooks, "MAX_SESSIONS", 3)
    monkeypatch.setattr(hooks, "MAX_PENDING_TOOLS", 2)
    receiver = HookReceiver()
    for index in range(10):
        receiver.translate(parse_hook({"session_id": f"s-{index}", "hook_event_name": "PreToolUse",
                                       "tool_name": "Bash", "tool_use_id": f"toolu_{index}",
                                       "tool_input": {"command": "sleep 600"}}),
                           role="BUILDER", source=None, received=NOW + index)
    assert len(receiver._sessions) == 3 and len(receiver._pending) == 2
