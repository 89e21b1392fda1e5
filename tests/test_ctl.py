"""`orchestrator-exporter ctl` against a real exporter: every verb, errors with exit code 1."""

from __future__ import annotations

import json
import subprocess
import sys

from support import ExporterProcess
from support.exporter import repository_root


def ctl(exporter: ExporterProcess, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "ctl", "--url", exporter.url,
                           "--token", exporter.token, *words], cwd=repository_root(),
                          capture_output=True, text=True, timeout=60, check=False)


def test_ctl_issues_lists_shows_and_reads_the_audit(exporter_factory):
    exporter = exporter_factory()
    assert exporter.post_events([{"type": "task.submitted", "task_id": "t-1"}]).status_code \
        == 200
    paused = ctl(exporter, "pause", "--role", "analyst", "--ttl", "60", "--key", "p-1")
    assert paused.returncode == 0, paused.stderr
    command = json.loads(paused.stdout)
    assert (command["kind"], command["target"]) == ("fleet.pause", {"role": "analyst"})
    cancelled = ctl(exporter, "cancel-task", "t-1")
    assert cancelled.returncode == 0 and json.loads(cancelled.stdout)["kind"] == "task.cancel"
    issued = ctl(exporter, "issue", "agent.create", "--arg", "role=TESTER", "--arg", "name=t2")
    assert json.loads(issued.stdout)["args"] == {"role": "TESTER", "name": "t2"}
    listed = ctl(exporter, "commands", "--status", "queued")
    assert [json.loads(line)["kind"] for line in listed.stdout.splitlines()] == [
        "fleet.pause", "task.cancel", "agent.create"]
    shown = ctl(exporter, "command", command["id"])
    assert json.loads(shown.stdout)["id"] == command["id"]
    audit = ctl(exporter, "audit", "--action", "command.task.cancel")
    assert [json.loads(line)["outcome"] for line in audit.stdout.splitlines()] == ["queued"]

    missing = ctl(exporter, "cancel-task", "t-404")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.strip() == "error: not_found: no task 't-404' is known"
    bad = ctl(exporter, "issue", "fleet.explode")
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid_command")
