"""`orchestrator-exporter import-logs` on AgentLogger folders, in the layout and line shapes the
Python orchestrator writes (agent_logger.py at cfe485ea): exact, idempotent, and following."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import ExporterProcess
from support.exporter import repository_root
from test_stream_acceptance import persistent_samples, total

TASK = "3fccf6d8-d534-41c1-9e5e-b6c8f8858708"


def _write(path: Path, lines: list[dict[str, Any] | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def _system(model: str) -> dict[str, Any]:
    return {"timestamp": "2025-11-09T16:41:08.044154", "type": "SystemMessage",
            "subtype": "init", "message": "SystemMessage(subtype='init', data={'type': "
            "'system', 'subtype': 'init', 'cwd': '/home/u/proj', 'session_id': "
            f"'5f0c2d1e-7a41-4c1b-9a55-0b8f6c2e9d11', 'model': '{model}', "
            "'permissionMode': 'bypassPermissions'})"}


def _result(cost: float | None, usage: dict[str, int], *, stamp: str,
            is_error: bool = False) -> dict[str, Any]:
    return {"timestamp": stamp, "type": "ResultMessage", "is_error": is_error,
            "result": "done", "duration_ms": 95873, "num_turns": 15,
            "session_id": "5f0c2d1e-7a41-4c1b-9a55-0b8f6c2e9d11", "total_cost_usd": cost,
            "usage": {**usage, "server_tool_use": {"web_search_requests": 0},
                      "service_tier": "standard"}, "total_messages_processed": 33}


def _tool_pair(use_id: str, tool: str, start: str, end: str,
               is_error: bool | None) -> list[dict[str, Any] | str]:
    return [{"timestamp": start, "type": "tool_use", "tool_name": tool, "tool_use_id": use_id,
             "input": {"file_path": "/home/u/proj/src/utils.py"}},
            {"timestamp": end, "type": "tool_result", "tool_use_id": use_id,
             "content": "[{'type': 'text', 'text': 'ok'}]" if is_error is not True else "None",
             "is_error": is_error}]


def agent_logs(root: Path) -> Path:
    """Three agents of one task: a builder with two queries, a planner, and a failed tester."""
    task = root / "agent_logs" / TASK
    builder = task / "9a307b23_Builder_Agent_20251109_164107"
    _write(builder / "summary.jsonl", [
        _system("claude-sonnet-4-5-20250929"),
        _result(0.13712455, {"input_tokens": 24, "cache_creation_input_tokens": 12406,
                             "cache_read_input_tokens": 186532, "output_tokens": 1874},
                stamp="2025-11-09T16:42:44.019511"),
        _result(0.02, {"input_tokens": 6, "cache_creation_input_tokens": 0,
                       "cache_read_input_tokens": 40000, "output_tokens": 300},
                stamp="2025-11-09T16:44:01.000001")])
    _write(builder / "tools.jsonl", [
        *_tool_pair("toolu_01XbV3", "Read", "2025-11-09T16:41:12.044384",
                    "2025-11-09T16:41:12.301511", None),
        *_tool_pair("toolu_01Hq2c", "Edit", "2025-11-09T16:41:30.717102",
                    "2025-11-09T16:41:30.802219", False),
        "{not json at all",
        *_tool_pair("toolu_01Zz9y", "Bash", "2025-11-09T16:41:40.000000",
                    "2025-11-09T16:41:52.500000", True)])
    planner = task / "f6fa2f33_Workflow_Planner_20251109_164102"
    _write(planner / "summary.jsonl", [
        _system("claude-sonnet-4-5-20250929"),
        _result(0.0101, {"input_tokens": 10, "cache_creation_input_tokens": 5000,
                         "cache_read_input_tokens": 0, "output_tokens": 700},
                stamp="2025-11-09T16:41:06.500000")])
    tester = task / "1c7b4783_Tester_Agent_20251109_164245"
    _write(tester / "summary.jsonl", [_system("claude-haiku-4-5")])  # failed: no ResultMessage
    _write(tester / "tools.jsonl", _tool_pair("toolu_02Aa1b", "Bash", "2025-11-09T16:42:50",
                                              "2025-11-09T16:43:10", True))
    return root / "agent_logs"


def import_logs(exporter: ExporterProcess, directory: Path, *extra: str,
                **options: Any) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "exporter", "import-logs", str(directory), "--url",
            exporter.url, "--token", exporter.token, "--tz", "Europe/Berlin", *extra]
    if options.get("background"):
        return subprocess.Popen(argv, cwd=repository_root(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return subprocess.run(argv, cwd=repository_root(), capture_output=True, text=True,
                          timeout=60, check=False)


def test_import_logs_is_exact_and_importing_again_adds_nothing(exporter_factory, tmp_path):
    exporter = exporter_factory()
    directory = agent_logs(tmp_path)
    done = import_logs(exporter, directory)
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0, done.stderr
    samples = exporter.metrics()
    assert round(total(samples, "orchestrator_cost_usd_total", role="BUILDER") * 1e9) == \
        157_124_550
    assert round(total(samples, "orchestrator_cost_usd_total", role="PLANNER") * 1e9) == 10_100_000
    assert total(samples, "orchestrator_cost_usd_total", role="TESTER") == 0
    assert total(samples, "orchestrator_tokens_total", type="cache_read") == 226_532
    assert total(samples, "orchestrator_tokens_total", type="output") == 2874
    assert total(samples, "orchestrator_tool_calls_total", outcome="success") == 2
    assert total(samples, "orchestrator_tool_calls_total", outcome="error") == 2
    assert total(samples, "orchestrator_tool_call_duration_seconds_sum", tool="Bash") == 32.5
    assert total(samples, "orchestrator_agents_created_total") == 3
    assert total(samples, "orchestrator_agents", status="completed") == 2
    assert "1 lines skipped" in done.stderr

    again = import_logs(exporter, directory)
    assert isinstance(again, subprocess.CompletedProcess) and again.returncode == 0
    assert persistent_samples(exporter.metrics()) == persistent_samples(samples)


def test_import_logs_follow_picks_up_new_lines_and_folders(exporter_factory, tmp_path):
    exporter = exporter_factory()
    directory = agent_logs(tmp_path)
    follower = import_logs(exporter, directory, "--follow", "--interval", "0.2", background=True)
    assert isinstance(follower, subprocess.Popen)
    try:
        _wait_for(exporter, "orchestrator_agents_created_total", 3)
        builder = directory / TASK / "9a307b23_Builder_Agent_20251109_164107"
        _write(builder / "tools.jsonl", _tool_pair("toolu_03Cc", "Grep", "2025-11-09T16:45:00",
                                                   "2025-11-09T16:45:01", False))
        _write(directory / TASK / "0b6f3c1e_Reviewer_Agent_20251109_164600" / "summary.jsonl",
               [_result(0.5, {"input_tokens": 1, "output_tokens": 2,
                              "cache_read_input_tokens": 3, "cache_creation_input_tokens": 4},
                        stamp="2025-11-09T16:47:00")])
        _wait_for(exporter, "orchestrator_agents_created_total", 4)
        _wait_for(exporter, "orchestrator_tool_calls_total", 5)
    finally:
        follower.send_signal(signal.SIGTERM)
        output, _ = follower.communicate(timeout=30)
    assert follower.returncode == 0, output
    samples = exporter.metrics()
    assert round(total(samples, "orchestrator_cost_usd_total", role="REVIEWER") * 1e9) == \
        500_000_000


def _wait_for(exporter: ExporterProcess, name: str, value: float) -> None:
    deadline = time.monotonic() + 20
    while total(exporter.metrics(), name) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.1)
