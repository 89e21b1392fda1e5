"""An agent on the Claude Agent SDK, reported by `AgentSdkReporter` into a real in-process
exporter. Every message, block and hook input is built with the SDK's own classes and
TypedDicts (claude-agent-sdk 0.2.189), the hooks are called as the SDK's query calls them
(`await callback(input, tool_use_id, {"signal": None})`), and the messages come in the order and
shape the CLI streams them: one API response as one `AssistantMessage` per content block, sharing
`message_id` and usage, the output count growing from a placeholder.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    HookContext,
    HookMatcher,
    PostToolUseFailureHookInput,
    PostToolUseHookInput,
    PreToolUseHookInput,
    ResultMessage,
    StopHookInput,
    SubagentStartHookInput,
    SubagentStopHookInput,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from test_orchestrator_integration import in_process_samples
from test_stream_acceptance import Samples, persistent_samples, total

from exporter.callback import MonitorCallback
from exporter.integrations.agent_sdk import AgentSdkReporter

SONNET = "claude-sonnet-4-5-20250929"  # $3 / $15 / $0.30 / $3.75 per million tokens
HAIKU = "claude-haiku-4-5-20251001"  # $1 / $5 / $0.10 / $1.25
SESSION = "5f0e7c1a-2b7d-4a57-9a51-3c0f8d2b6e11"
BASE: dict[str, Any] = {"session_id": SESSION, "cwd": "/work/repo",
                        "transcript_path": f"/home/me/.claude/projects/-work-repo/{SESSION}.jsonl"}


def usage(input_tokens: int, output_tokens: int, cache_read: int = 0,
          cache_creation: int = 0) -> dict[str, Any]:
    """The Messages API's usage object, as the CLI passes it through."""
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_creation,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_creation,
                               "ephemeral_1h_input_tokens": 0},
            "service_tier": "standard"}


def part(message_id: str, block: Any, used: dict[str, Any], *, model: str = SONNET,
         parent: str | None = None, stop_reason: str | None = None) -> AssistantMessage:
    return AssistantMessage(content=[block], model=model, usage=used, message_id=message_id,
                            parent_tool_use_id=parent, stop_reason=stop_reason,
                            session_id=SESSION)


def result(*, cost: float, is_error: bool = False, **fields: Any) -> ResultMessage:
    return ResultMessage(subtype=fields.pop("subtype", "success"), duration_ms=9_120,
                         duration_api_ms=7_400, is_error=is_error, num_turns=4,
                         session_id=SESSION, total_cost_usd=cost,
                         usage=usage(855, 350, 47_300, 3_000), **fields)


INIT = SystemMessage(subtype="init", data={
    "type": "system", "subtype": "init", "uuid": "0b5d", "session_id": SESSION,
    "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.205", "cwd": "/work/repo",
    "tools": ["Read", "Bash", "Grep", "Agent"], "mcp_servers": [], "model": SONNET,
    "permissionMode": "default", "slash_commands": [], "output_style": "default", "skills": [],
    "plugins": []})

# One session, step by step: ("message", m) is streamed, ("hook", input) is a hook call.
# Per message (Sonnet unless named): tokens in / out / cache read / cache write, and its price:
#   msg_01  12 /  80 / 10,000 / 2,000  11,736,000 nano-dollars (its text part says output 1)
#   msg_02  30 /  60 / 12,000 /   500   6,465,000
#   msg_03   5 /  40 / 12,500 /   300   5,490,000
#   msg_s1 800 /  50 /      0 /     0   1,050,000  (Haiku, the sub-agent's)
#   msg_04   8 / 120 / 12,800 /   200   6,414,000
# in all 855 / 350 / 47,300 / 3,000 tokens and 31,155,000 nano-dollars.
READ_INPUT = {"file_path": "/work/repo/app.py"}
BASH_INPUT = {"command": "pytest -q"}
AGENT_INPUT = {"description": "find callers", "prompt": "Find callers", "subagent_type": "Explore"}
GREP_INPUT = {"pattern": "def handle"}
SUB = {"agent_id": "a4c1f09", "agent_type": "Explore"}


def session(final: ResultMessage) -> list[tuple[str, Any]]:
    msg_01 = usage(12, 1, 10_000, 2_000)
    return [
        ("message", INIT),
        ("message", part("msg_01", TextBlock(text="Reading the file."), msg_01)),
        ("message", part("msg_01", ToolUseBlock(id="toolu_01", name="Read", input=READ_INPUT),
                         {**msg_01, "output_tokens": 80})),
        ("hook", PreToolUseHookInput(**BASE, hook_event_name="PreToolUse", tool_name="Read",
                                     tool_input=READ_INPUT, tool_use_id="toolu_01")),
        ("hook", PostToolUseHookInput(**BASE, hook_event_name="PostToolUse", tool_name="Read",
                                      tool_input=READ_INPUT, tool_response={"type": "text"},
                                      tool_use_id="toolu_01", duration_ms=40)),
        ("message", UserMessage(content=[ToolResultBlock(tool_use_id="toolu_01",
                                                         content="def handle(): ...")])),
        ("message", part("msg_02", ToolUseBlock(id="toolu_02", name="Bash", input=BASH_INPUT),
                         usage(30, 60, 12_000, 500), stop_reason="tool_use")),
        ("hook", PreToolUseHookInput(**BASE, hook_event_name="PreToolUse", tool_name="Bash",
                                     tool_input=BASH_INPUT, tool_use_id="toolu_02")),
        ("hook", PostToolUseFailureHookInput(**BASE, hook_event_name="PostToolUseFailure",
                                             tool_name="Bash", tool_input=BASH_INPUT,
                                             tool_use_id="toolu_02", error="Exit code 1",
                                             duration_ms=1_500)),
        ("message", UserMessage(content=[ToolResultBlock(tool_use_id="toolu_02",
                                                         content="Exit code 1", is_error=True)])),
        ("message", part("msg_03", ToolUseBlock(id="toolu_03", name="Agent", input=AGENT_INPUT),
                         usage(5, 40, 12_500, 300), stop_reason="tool_use")),
        ("hook", PreToolUseHookInput(**BASE, hook_event_name="PreToolUse", tool_name="Agent",
                                     tool_input=AGENT_INPUT, tool_use_id="toolu_03")),
        ("hook", SubagentStartHookInput(**BASE, hook_event_name="SubagentStart", **SUB)),
        ("message", part("msg_s1", ToolUseBlock(id="toolu_04", name="Grep", input=GREP_INPUT),
                         usage(800, 50), model=HAIKU, parent="toolu_03")),
        ("hook", PreToolUseHookInput(**BASE, **SUB, hook_event_name="PreToolUse",
                                     tool_name="Grep", tool_input=GREP_INPUT,
                                     tool_use_id="toolu_04")),
        ("hook", PostToolUseHookInput(**BASE, **SUB, hook_event_name="PostToolUse",
                                      tool_name="Grep", tool_input=GREP_INPUT,
                                      tool_response="app.py:3", tool_use_id="toolu_04",
                                      duration_ms=25)),
        ("hook", SubagentStopHookInput(**BASE, **SUB, hook_event_name="SubagentStop",
                                       stop_hook_active=False,
                                       agent_transcript_path="/tmp/agent-a4c1f09.jsonl")),
        ("hook", PostToolUseHookInput(**BASE, hook_event_name="PostToolUse", tool_name="Agent",
                                      tool_input=AGENT_INPUT, tool_response={"status": "ok"},
                                      tool_use_id="toolu_03", duration_ms=2_000)),
        ("message", part("msg_04", TextBlock(text="The test fails on line 3."),
                         usage(8, 120, 12_800, 200), stop_reason="end_turn")),
        ("hook", StopHookInput(**BASE, hook_event_name="Stop", stop_hook_active=False)),
        ("message", final),
    ]


def run_session(reporter: AgentSdkReporter, steps: list[tuple[str, Any]], *,
                hooks: bool = True) -> None:
    """Streams the messages through `watch` and calls the hooks the way the SDK's query does:
    each matcher's callbacks, awaited, with the input, its tool_use_id and the context."""
    matchers = ClaudeAgentOptions(hooks=reporter.hooks()).hooks if hooks else None

    async def stream() -> AsyncIterator[Any]:
        for kind, item in steps:
            if kind == "message":
                yield item
            elif matchers is not None:
                for matcher in matchers.get(item["hook_event_name"], []):
                    for callback in matcher.hooks:
                        context: HookContext = {"signal": None}
                        assert await callback(item, item.get("tool_use_id"), context) == {}

    async def consume() -> list[Any]:
        return [message async for message in reporter.watch(stream())]

    streamed = asyncio.run(consume())
    assert streamed == [item for kind, item in steps if kind == "message"]


def nano(samples: Samples, **labels: str) -> int:
    return round(total(samples, "orchestrator_cost_usd_total", **labels) * 1e9)


def assert_session_totals(samples: Samples, cost_nano: int) -> None:
    for token_type, count in (("input", 855), ("output", 350), ("cache_read", 47_300),
                              ("cache_creation", 3_000)):
        assert total(samples, "orchestrator_tokens_total", type=token_type) == count, token_type
    assert nano(samples) == cost_nano
    assert total(samples, "orchestrator_tool_calls_total", outcome="success") == 3
    assert total(samples, "orchestrator_tool_calls_total", outcome="error") == 1
    assert total(samples, "orchestrator_tool_calls_total", tool="Bash", outcome="error") == 1
    assert total(samples, "orchestrator_tool_calls_total", role="EXPLORE", tool="Grep") == 1
    assert total(samples, "orchestrator_tool_call_duration_seconds_count") == 4
    assert total(samples, "orchestrator_tool_call_duration_seconds_sum") == pytest.approx(3.565)
    assert total(samples, "orchestrator_agents_created_total", role="REVIEWER") == 1
    assert total(samples, "orchestrator_agents_created_total", role="EXPLORE") == 1
    assert total(samples, "orchestrator_agents", status="completed") == 2
    assert total(samples, "orchestrator_agents", status="running") == 0


def test_a_session_reports_exact_usage_tool_calls_and_status(tmp_path):
    # The SDK's total is below the table's price: the table's stands, nothing is added.
    steps = session(result(cost=0.0305))

    def drive(callback: MonitorCallback) -> None:
        run_session(AgentSdkReporter(callback.emit, "reviewer-1", role="reviewer",
                                     task_id="T-7"), steps)

    samples = in_process_samples(tmp_path, drive)
    assert_session_totals(samples, 31_155_000)
    assert nano(samples, model="claude-haiku-4-5-20251001") == 1_050_000
    assert total(samples, "orchestrator_tokens_total", model=HAIKU, type="input") == 800
    assert total(samples, "orchestrator_unpriced_usage_events_total") == 0


def test_the_sdk_total_counts_only_what_it_adds_to_the_priced_messages(tmp_path):
    # 0.05 USD (say, web searches the tokens do not show): the agent's cost is the SDK's total.
    def drive(callback: MonitorCallback) -> None:
        run_session(AgentSdkReporter(callback.emit, "reviewer-1", role="REVIEWER"),
                    session(result(cost=0.05)))

    samples = in_process_samples(tmp_path, drive)
    assert_session_totals(samples, 50_000_000)


def test_replaying_the_session_counts_nothing_again(tmp_path):
    steps = session(result(cost=0.0305))

    def once(callback: MonitorCallback) -> None:
        run_session(AgentSdkReporter(callback.emit, "reviewer-1", role="REVIEWER"), steps)

    def replayed(callback: MonitorCallback) -> None:
        reporter = AgentSdkReporter(callback.emit, "reviewer-1", role="REVIEWER")
        run_session(reporter, steps)
        run_session(reporter, steps)  # the same reporter: it remembers what it counted
        # A new reporter (a restarted process) sends the same event ids: duplicates.
        run_session(AgentSdkReporter(callback.emit, "reviewer-1", role="REVIEWER"), steps)

    counted = ("agent.created", "agent.usage", "agent.tool_call")
    sent: list[Mapping[str, Any]] = []
    reporter = AgentSdkReporter(sent.append, "reviewer-1", role="REVIEWER")
    run_session(reporter, steps)
    first = len(sent)
    run_session(reporter, steps)
    assert not [event for event in sent[first:] if event["type"] in counted]

    (tmp_path / "once").mkdir()
    (tmp_path / "replayed").mkdir()
    single = in_process_samples(tmp_path / "once", once)
    triple = in_process_samples(tmp_path / "replayed", replayed)
    assert_session_totals(triple, 31_155_000)
    assert persistent_samples(triple) == persistent_samples(single)


def test_a_response_in_parts_adds_only_its_growth_and_a_sub_agent_keeps_off_the_context():
    sent: list[Mapping[str, Any]] = []
    run_session(AgentSdkReporter(sent.append, "reviewer-1"), session(result(cost=0.0305)))
    usages = [event for event in sent if event["type"] == "agent.usage" and "totals" not in event]
    # msg_01's text part counts its placeholder output of 1, its tool part the other 79 alone.
    assert [(event["input_tokens"], event["output_tokens"]) for event in usages] == [
        (12, 1), (0, 79), (30, 60), (5, 40), (800, 50), (8, 120)]
    assert [event.get("context_tokens") for event in usages] == [
        12_012, 12_012, 12_530, 12_805, None, 13_008]
    assert usages[4]["model"] == HAIKU


def test_without_hooks_tool_calls_come_from_the_stream_and_an_error_result_fails_it(tmp_path):
    failed = result(cost=0.0305, is_error=True, subtype="error_max_turns",
                    errors=["Reached maximum number of turns (4)"])

    def drive(callback: MonitorCallback) -> None:
        run_session(AgentSdkReporter(callback.emit, "reviewer-1"), session(failed), hooks=False)

    samples = in_process_samples(tmp_path, drive)
    # Read and Bash by their results' is_error; Grep (the sub-agent's) and Agent never got
    # a result in this stream, so they are not counted. No durations but receipt times.
    assert total(samples, "orchestrator_tool_calls_total", tool="Read", outcome="success") == 1
    assert total(samples, "orchestrator_tool_calls_total", tool="Bash", outcome="error") == 1
    assert total(samples, "orchestrator_tool_calls_total") == 2
    assert total(samples, "orchestrator_agents_created_total", role="AGENT_SDK") == 1
    assert total(samples, "orchestrator_agents", status="failed") == 1
    assert total(samples, "orchestrator_log_entries_total", level="error") == 1
    assert nano(samples) == 31_155_000
    assert total(samples, "orchestrator_tokens_total", type="output") == 350


def test_a_broken_sink_never_raises_into_the_agent(caplog):
    calls: list[Mapping[str, Any]] = []

    def broken(event: Mapping[str, Any]) -> None:
        calls.append(event)
        raise ConnectionError("exporter down")

    reporter = AgentSdkReporter(broken, "reviewer-1")
    with caplog.at_level(logging.ERROR, logger="exporter.integrations.emitter"):
        run_session(reporter, session(result(cost=0.0305, is_error=True)))
    assert len(calls) >= 20
    assert len(caplog.records) == len(calls)
    assert all(record.exc_info is not None for record in caplog.records)


def test_a_failing_stream_marks_the_agent_failed_and_raises_on():
    events: list[Mapping[str, Any]] = []
    reporter = AgentSdkReporter(events.append, "reviewer-1")

    async def stream() -> AsyncIterator[Any]:
        yield INIT
        raise ConnectionError("CLI process exited with code 1")

    async def consume() -> None:
        async for _message in reporter.watch(stream()):
            pass

    with pytest.raises(ConnectionError):
        asyncio.run(consume())
    assert [event["type"] for event in events] == [
        "agent.created", "agent.status_changed", "log.entry", "agent.status_changed"]
    assert events[-1]["status"] == "failed"
    assert events[-2]["message"] == "ConnectionError: CLI process exited with code 1"


def test_hooks_plug_into_the_sdk_options():
    reporter = AgentSdkReporter(lambda event: None, "reviewer-1")
    options = ClaudeAgentOptions(hooks=reporter.hooks())
    assert options.hooks is not None
    assert set(options.hooks) == {"PreToolUse", "PostToolUse", "PostToolUseFailure",
                                  "SubagentStart", "SubagentStop", "Stop"}
    assert all(isinstance(matcher, HookMatcher) and matcher.matcher is None
               for matchers in options.hooks.values() for matcher in matchers)


def test_the_adapter_imports_without_the_sdk():
    # The SDK is a dev dependency only: the adapter may touch it only when handed its objects.
    code = ("import sys; import exporter.integrations.agent_sdk, exporter.service; "
            "sys.exit('claude_agent_sdk' in sys.modules)")
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
