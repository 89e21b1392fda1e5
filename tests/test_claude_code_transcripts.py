"""`orchestrator-exporter import-transcripts` on Claude Code transcripts laid out and written as
Claude Code writes them (tests/fixtures/claude_code/projects): exact to the nano-dollar, idempotent,
and never reading outside the directory or the configured roots.

The fixture's traps and what each must come to:
- msg_01A1sTrEaMiNg: three lines (thinking, text, tool_use), output 1, 1, 412: counted once, 412;
  its copy in the forked session's file counts nothing more.
- msg_01A2TwoBlocks: two lines with the same usage: counted once.
- a line cut short (not JSON) and an API error (<synthetic>, zero usage): nothing.
- the Explore sub-agent's file (agentId, meta.json): its own agent, role EXPLORE; its first
  message streamed as snapshots (output 1, then 96).
- a 1.0.x session: costUSD counted as the source's cost, its sidechain lines (no agentId) a
  sub-agent named by the sidechain's first line.

Prices (USD per million, nano-USD per token): Sonnet 4.5 input 3, output 15, cache read 0.30,
5-minute write 3.75, 1-hour write 6; Haiku 4.5 input 1, output 5, cache read 0.10, 5-minute write
1.25, 1-hour write 2.

| message | tokens (in, out, read, 5m, 1h) | nano-USD |
|---|---|---|
| A1 Sonnet | 3, 412, 15000, 0, 12000 | 9,000 + 6,180,000 + 4,500,000 + 72,000,000 = 82,689,000 |
| A2 Sonnet | 5, 230, 27000, 800, 0 | 15,000 + 3,450,000 + 8,100,000 + 3,000,000 = 14,565,000 |
| A3 Sonnet | 400, 60, 28000, 0, 0 | 1,200,000 + 900,000 + 8,400,000 = 10,500,000 |
| B1 Sonnet (fork) | 10, 100, 20000, 0, 0 | 30,000 + 1,500,000 + 6,000,000 = 7,530,000 |
| C1 (1.0.x) | 120, 45 | costUSD 0.0123 = 12,300,000 |
| S1 Haiku (Explore) | 8, 96, 9000, 3000, 0 | 8,000 + 480,000 + 900,000 + 3,750,000 = 5,138,000 |
| S2 Haiku | 2, 310, 12000, 0, 500 | 2,000 + 1,550,000 + 1,200,000 + 1,000,000 = 3,752,000 |
| C2 (1.0.x sidechain) | 50, 20 | costUSD 0.0004 = 400,000 |
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import ExporterProcess, http_client
from support.exporter import repository_root
from test_stream_acceptance import persistent_samples, total

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude_code" / "projects"
S1 = "0b7e6f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
S2 = "9c41d8e7-5b2a-4f60-b3e1-7d9a0c2f6e84"
S3 = "3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"
EXPLORE = f"{S1}:a5c0ffee123456789"
OLD_SIDECHAIN = f"{S3}:f5c7e9b1-3d2f-4b6d-8f0a-5c7e9b1d3f11"
TWO_HOURS_AGO = time.time() - 7200


def projects(tmp_path: Path) -> Path:
    """A copy of the fixture, its files last written two hours ago (the sessions have ended)."""
    root = tmp_path / "projects"
    shutil.copytree(FIXTURES, root)
    for path in root.rglob("*"):
        os.utime(path, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    return root


def import_transcripts(exporter: ExporterProcess, directory: Path, *extra: str,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("EXPORTER_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "import-transcripts", str(directory), "--url",
         exporter.url, "--token", exporter.token, *extra], cwd=repository_root(),
        capture_output=True, text=True, timeout=60, check=False, env={**environment, **(env or {})})


def read_agent(exporter: ExporterProcess, agent_id: str) -> dict[str, Any]:
    with http_client() as client:
        response = client.get(f"{exporter.url}/api/v1/agents/{agent_id}",
                              headers={"Authorization": f"Bearer {exporter.token}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def nano(samples: dict[Any, float], **labels: str) -> int:
    return round(total(samples, "orchestrator_cost_usd_total", **labels) * 1e9)


def test_import_transcripts_is_exact_and_importing_again_adds_nothing(exporter_factory,
                                                                      tmp_path):
    exporter = exporter_factory()
    done = import_transcripts(exporter, projects(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "1 lines skipped" in done.stderr, done.stderr
    samples = exporter.metrics()
    assert nano(samples, role="CLAUDE_CODE") == \
        82_689_000 + 14_565_000 + 10_500_000 + 7_530_000 + 12_300_000
    assert nano(samples, role="EXPLORE") == 5_138_000 + 3_752_000
    assert nano(samples, role="SUBAGENT") == 400_000
    tokens = {kind: total(samples, "orchestrator_tokens_total", type=kind)
              for kind in ("input", "output", "cache_read", "cache_creation")}
    assert tokens == {"input": 598, "output": 1273, "cache_read": 111_000,
                      "cache_creation": 16_300}
    assert total(samples, "orchestrator_tokens_total", model="claude-haiku-4-5-20251001",
                 type="output") == 406
    assert total(samples, "orchestrator_unpriced_usage_events_total") == 0
    assert total(samples, "orchestrator_agents_created_total") == 5
    assert total(samples, "orchestrator_agents", status="completed") == 5  # history, not live
    assert total(samples, "orchestrator_log_entries_total", level="info") == 1  # compaction

    session = read_agent(exporter, S1)
    assert (session["role"], session["model"], session["context_tokens"],
            session["context_limit_tokens"]) == \
        ("CLAUDE_CODE", "claude-sonnet-4-5-20250929", 28_400, 200_000)
    assert session["tokens"]["output"] == 412 + 230 + 60
    assert read_agent(exporter, EXPLORE)["role"] == "EXPLORE"
    assert read_agent(exporter, OLD_SIDECHAIN)["model"] == "claude-3-5-haiku-20241022"
    assert read_agent(exporter, S2)["tokens"]["output"] == 100

    again = import_transcripts(exporter, projects(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert persistent_samples(exporter.metrics()) == persistent_samples(samples)


def test_paths_outside_the_directory_or_the_roots_are_refused(exporter_factory, tmp_path):
    exporter = exporter_factory()
    root = projects(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "-home-dev-secret").mkdir(parents=True)
    stolen = elsewhere / "-home-dev-secret" / f"{S3}.jsonl"
    shutil.copy(root / "-home-dev-shop" / f"{S1}.jsonl", stolen)
    (root / "-home-dev-shop" / "escape.jsonl").symlink_to(stolen)
    (root / "-home-dev-linked").symlink_to(elsewhere / "-home-dev-secret")

    outside = import_transcripts(exporter, root, env={
        "EXPORTER_TRANSCRIPT_ROOTS": json.dumps([str(elsewhere)])})
    assert outside.returncode == 2 and "outside the transcript roots" in outside.stderr
    assert total(exporter.metrics(), "orchestrator_exporter_events_accepted_total") == 0

    done = import_transcripts(exporter, root, env={
        "EXPORTER_TRANSCRIPT_ROOTS": json.dumps([str(tmp_path)])})
    assert done.returncode == 0, done.stderr
    assert "refused" in done.stderr and "escape.jsonl" in done.stderr
    samples = exporter.metrics()
    assert nano(samples) == 136_874_000  # the fixture's, nothing of the files outside
    assert total(samples, "orchestrator_agents_created_total") == 5


def test_a_message_still_streaming_waits_for_the_next_run(exporter_factory, tmp_path):
    exporter = exporter_factory()
    root = projects(tmp_path)
    live = root / "-home-dev-shop" / f"{S1}.jsonl"
    lines = live.read_text().splitlines()
    snapshot = json.loads(next(line for line in lines if "msg_01A3EndTurn" in line))
    snapshot["message"].update(stop_reason=None, usage={**snapshot["message"]["usage"],
                                                        "output_tokens": 1})
    live.write_text("\n".join([line for line in lines if "msg_01A3EndTurn" not in line
                               and '"last-prompt"' not in line]
                              + [json.dumps(snapshot)]) + "\n")  # written just now
    assert import_transcripts(exporter, root).returncode == 0
    assert read_agent(exporter, S1)["tokens"]["output"] == 412 + 230
    assert read_agent(exporter, S1)["status"] == "pending"  # still being written: live

    final = {**snapshot, "message": {**snapshot["message"], "stop_reason": "end_turn",
                                     "usage": {**snapshot["message"]["usage"],
                                               "output_tokens": 60}}}
    with live.open("a") as handle:
        handle.write(json.dumps(final) + "\n")
    os.utime(live, (TWO_HOURS_AGO, TWO_HOURS_AGO))
    assert import_transcripts(exporter, root).returncode == 0
    session = read_agent(exporter, S1)
    assert (session["tokens"]["output"], session["status"]) == (412 + 230 + 60, "completed")
