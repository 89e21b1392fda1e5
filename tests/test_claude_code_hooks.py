"""Claude Code's hooks on `POST /api/v1/hooks/claude-code`, against a real exporter: a recorded
session (tests/fixtures/claude_code/hooks/session.jsonl, the inputs Claude Code 2.1 passes its
hooks) drives a session agent and its sub-agent; retries count once; bad bodies get 4xx; the
transcript is read for the context window only below EXPORTER_TRANSCRIPT_ROOTS."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support import ExporterProcess, http_client, write_tokens_file
from test_stream_acceptance import persistent_samples, total

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "claude_code" / "hooks" / "session.jsonl"
SESSION = "6f1c2a9e-3b7d-4e21-9a0c-5d2f8b4e7a13"
SUBAGENT = f"{SESSION}:a3f9c2e1b7d40a8c6"
INGEST = "claude-code-hook-secret"
VIEWER = "viewer-secret"
PROJECT = "-home-dev-shop"


def recorded_hooks(transcripts: Path) -> list[dict[str, Any]]:
    lines = FIXTURE.read_text().replace("{transcripts}", str(transcripts)).splitlines()
    return [json.loads(line) for line in lines]


def assistant_line(session: str, *, model: str, input_tokens: int, cache_read: int,
                   cache_write: int, message: str = "msg_01Ctx") -> dict[str, Any]:
    """An assistant line as Claude Code writes it to the session's transcript."""
    return {"parentUuid": "2f4a6c8e-0b1d-4f3a-8c5e-7a9b1c3d5e01", "isSidechain": False,
            "userType": "external", "cwd": "/home/dev/shop", "sessionId": session,
            "version": "2.1.248", "gitBranch": "main",
            "message": {"model": model, "id": message, "type": "message", "role": "assistant",
                        "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn",
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens,
                                  "cache_creation_input_tokens": cache_write,
                                  "cache_read_input_tokens": cache_read, "output_tokens": 310,
                                  "service_tier": "standard",
                                  "cache_creation": {"ephemeral_1h_input_tokens": 0,
                                                     "ephemeral_5m_input_tokens": cache_write},
                                  "inference_geo": "not_available"}},
            "requestId": f"req_{message}", "type": "assistant",
            "uuid": "4a6c8e0b-2d1f-4a3c-8e5b-9c1d3e5f7a02",
            "timestamp": "2026-11-20T09:16:02.730Z"}


def write_transcript(root: Path, session: str, lines: list[dict[str, Any]]) -> Path:
    path = root / PROJECT / f"{session}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
    return path


def post_hook(exporter: ExporterProcess, body: Any, *, secret: str = INGEST,
              content_type: str = "application/json", query: str = "",
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with http_client() as client:
        response = client.post(
            f"{exporter.url}/api/v1/hooks/claude-code{query}", content=content,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": content_type,
                     **(headers or {})})
    return response.status_code, response.json()


def read_agent(exporter: ExporterProcess, agent_id: str, suffix: str = "") -> dict[str, Any]:
    with http_client() as client:
        response = client.get(f"{exporter.url}/api/v1/agents/{agent_id}{suffix}",
                              headers={"Authorization": f"Bearer {exporter.token}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def transcripts(tmp_path: Path) -> Path:
    root = tmp_path / "projects"
    root.mkdir()
    return root


@pytest.fixture
def exporter(exporter_factory, tmp_path, transcripts) -> ExporterProcess:
    tokens = write_tokens_file(tmp_path / "tokens.yml", [("claude-code", "ingest", INGEST),
                                                        ("dashboards", "viewer", VIEWER)])
    return exporter_factory(env={"EXPORTER_TOKENS_FILE": str(tokens),
                                 "EXPORTER_TRANSCRIPT_ROOTS": json.dumps([str(transcripts)])})


def test_a_recorded_session_drives_the_agent_through_running_waiting_idle_and_ended(
        exporter, transcripts):
    write_transcript(transcripts, SESSION, [assistant_line(
        SESSION, model="claude-sonnet-4-5-20250929", input_tokens=250, cache_read=38_000,
        cache_write=3_000)])
    hooks = recorded_hooks(transcripts)
    statuses = {1: "running", 5: "waiting", 6: "waiting", 7: "running", 16: "idle",
                17: "waiting", 19: "completed"}
    for index, hook in enumerate(hooks):
        if hook["hook_event_name"] == "PostToolUseFailure":
            time.sleep(0.3)  # the Bash call has no duration_ms: timed from its PreToolUse
        status, answer = post_hook(exporter, hook)
        assert status == 200, (index, answer)
        assert answer["accepted"] >= 1, (index, answer)
        if index in statuses:
            assert read_agent(exporter, SESSION)["status"] == statuses[index], index

    session = read_agent(exporter, SESSION)
    assert (session["role"], session["model"]) == ("CLAUDE_CODE", "claude-sonnet-4-5")
    # The transcript's last assistant message: input + cache read + cache write, of the
    # model's 200k window (the price table's).
    assert (session["context_tokens"], session["context_limit_tokens"]) == (41_250, 200_000)
    assert session["tool_calls"] == [
        {"tool": "Agent", "outcome": "success", "count": 1},
        {"tool": "Bash", "outcome": "error", "count": 1},
        {"tool": "Edit", "outcome": "success", "count": 1},
        {"tool": "Read", "outcome": "success", "count": 1}]
    subagent = read_agent(exporter, SUBAGENT)
    assert (subagent["role"], subagent["status"]) == ("EXPLORE", "completed")
    assert subagent["tool_calls"] == [{"tool": "Grep", "outcome": "success", "count": 1}]
    files = read_agent(exporter, SESSION, "/files")["items"]
    assert files == [{"path": "/home/dev/shop/scripts/deploy.py", "read": 1, "written": 1}]

    samples = exporter.metrics()
    assert total(samples, "orchestrator_agents_created_total", role="CLAUDE_CODE") == 1
    assert total(samples, "orchestrator_agents_created_total", role="EXPLORE") == 1
    assert total(samples, "orchestrator_agents", status="completed") == 2
    assert total(samples, "orchestrator_tool_calls_total", role="EXPLORE", tool="Grep",
                 outcome="success") == 1
    durations = {tool: total(samples, "orchestrator_tool_call_duration_seconds_sum", tool=tool)
                 for tool in ("Read", "Edit", "Agent", "Grep")}
    assert durations == {"Read": 0.042, "Edit": 0.018, "Agent": 8.2, "Grep": 0.015}
    assert 0.3 <= total(samples, "orchestrator_tool_call_duration_seconds_sum", tool="Bash") < 5
    assert total(samples, "orchestrator_errors_total", origin="tool_call") == 1
    assert total(samples, "orchestrator_log_entries_total", level="info") == 1  # compaction
    assert total(samples, "orchestrator_exporter_events_accepted_total",
                 type="agent.tool_call") == 5


def counters(samples: dict[Any, float]) -> dict[Any, float]:
    return {key: value for key, value in persistent_samples(samples).items()
            if key[0].endswith(("_total", "_bucket", "_sum", "_count"))}


def test_a_hook_posted_again_counts_nothing_more(exporter, transcripts):
    hooks = recorded_hooks(transcripts)
    for hook in hooks:
        first = post_hook(exporter, hook)
        again = post_hook(exporter, hook)  # a retry: curl, a proxy, or the user repeats it
        assert first[0] == again[0] == 200
        assert again[1]["accepted"] == 0 and again[1]["duplicates"] >= 1, (hook, again)
    once = counters(exporter.metrics())
    assert total(once, "orchestrator_tool_calls_total") == 5
    assert total(once, "orchestrator_agents_created_total") == 2
    # Its tool calls and sub-agent, told again much later, still count once.
    for hook in hooks:
        if hook["hook_event_name"] in ("PostToolUse", "PostToolUseFailure", "SubagentStop",
                                       "SubagentStart", "SessionStart"):
            assert post_hook(exporter, hook)[0] == 200
    assert counters(exporter.metrics()) == once


BAD_BODIES = [
    (b"{not json", "application/json", 400, ""),
    (b"[]", "application/json", 422, ""),
    (json.dumps({"hook_event_name": "Stop"}).encode(), "application/json", 422, "session_id"),
    (json.dumps({"session_id": SESSION}).encode(), "application/json", 422, "hook_event_name"),
    (json.dumps({"session_id": "../../etc", "hook_event_name": "Stop"}).encode(),
     "application/json", 422, "session_id"),
    (json.dumps({"session_id": SESSION, "hook_event_name": "PreToolUse",
                 "tool_input": "rm -rf /"}).encode(), "application/json", 422, "tool_input"),
    (json.dumps({"session_id": SESSION, "hook_event_name": "PostToolUse",
                 "duration_ms": "12"}).encode(), "application/json", 422, "duration_ms"),
    (json.dumps({"session_id": SESSION, "hook_event_name": "Stop"}).encode(), "text/plain",
     415, "Content-Type"),
    (b'{"session_id": "s", "hook_event_name": "Stop", "pad": "' + b"x" * (1024 * 1024)
     + b'"}', "application/json", 413, None),
]


def test_a_bad_hook_body_gets_a_4xx_naming_the_field_and_stores_nothing(exporter):
    for body, content_type, status, field in BAD_BODIES:
        answer_status, answer = post_hook(exporter, body, content_type=content_type)
        assert answer_status == status, (body[:80], answer)
        assert set(answer) == {"code", "message", "details", "request_id"}
        if field is not None:
            assert answer["details"][0]["field"] == field, answer
    assert total(exporter.metrics(), "orchestrator_exporter_events_accepted_total") == 0


def test_hooks_need_a_token_that_may_ingest_and_a_valid_role(exporter):
    stop = {"session_id": SESSION, "hook_event_name": "Stop"}
    assert post_hook(exporter, stop, secret="wrong")[0] == 401
    assert post_hook(exporter, stop, secret=VIEWER)[0] == 403
    status, answer = post_hook(exporter, stop, headers={"X-Orchestrator-Role": 'bad"role'})
    assert (status, answer["details"][0]["field"]) == (422, "role")
    assert post_hook(exporter, stop, query="?role=reviewer&source=laptop-7")[0] == 200
    agent = read_agent(exporter, f"{SESSION}?source=laptop-7")
    assert (agent["role"], agent["source"], agent["status"]) == ("REVIEWER", "laptop-7", "idle")


def test_a_transcript_outside_the_roots_is_never_read(exporter, transcripts, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "notes.jsonl"
    secret.write_text(json.dumps(assistant_line("x", model="claude-sonnet-4-5",
                                                input_tokens=9, cache_read=90_000,
                                                cache_write=0)) + "\n")
    (transcripts / PROJECT).mkdir()
    (transcripts / PROJECT / "link.jsonl").symlink_to(secret)
    paths = {"s-link": str(transcripts / PROJECT / "link.jsonl"),
             "s-dots": f"{transcripts}/{PROJECT}/../../elsewhere/notes.jsonl",
             "s-relative": "elsewhere/notes.jsonl",
             "s-direct": str(secret)}
    for session, path in paths.items():
        status, _ = post_hook(exporter, {"session_id": session, "transcript_path": path,
                                         "hook_event_name": "Stop"})
        assert status == 200
        assert read_agent(exporter, session)["context_tokens"] == 0, session
    assert "outside the transcript roots" in (exporter.workdir / "exporter.log").read_text()


def test_a_1m_context_session_has_the_long_window(exporter, transcripts):
    session = "1d3f5a7c-9e2b-4d6f-8a0c-2e4a6c8e0b21"
    path = write_transcript(transcripts, session, [assistant_line(
        session, model="claude-sonnet-4-5-20250929", input_tokens=12, cache_read=310_000,
        cache_write=4_000)])
    start = {"session_id": session, "transcript_path": str(path),
             "hook_event_name": "SessionStart", "source": "startup",
             "model": "claude-sonnet-4-5[1m]"}
    assert post_hook(exporter, start)[0] == 200
    agent = read_agent(exporter, session)
    assert (agent["model"], agent["context_tokens"], agent["context_limit_tokens"]) == \
        ("claude-sonnet-4-5", 314_012, 1_000_000)
