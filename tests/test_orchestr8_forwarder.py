"""The JavaScript forwarder for @orchestr8's event bus (forwarders/orchestr8): its own node:test
suite, and the bus's real event sequence forwarded into a real exporter."""

from __future__ import annotations

import json
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

import pytest
import support
from support import ExporterFactory, ExporterProcess, wait_until

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "forwarders" / "orchestr8" / "test" / "drive-real-exporter.mjs"
NODE_TIMEOUT = 120.0
METRICS_TIMEOUT = 15.0
# What the driver's three executions (plus one retry.attempted and one circuitBreaker.opened)
# come to; s3 of the failed run is closed as skipped when its run ends.
EXPECTED = {
    "runs completed": 1.0,
    "runs failed": 1.0,
    "runs cancelled": 1.0,
    "runs started": 3.0,
    "steps completed": 4.0,
    "steps failed": 1.0,
    "steps skipped": 1.0,
    "steps cancelled": 1.0,
    "step TIMEOUT errors": 1.0,
    "orchestr8 events ignored": 2.0,
}

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


def test_the_node_suites_of_the_forwarder_and_the_runner_pass() -> None:
    node = support.require_binary("node", "nodejs")
    result = subprocess.run(
        [node, "--test", "forwarders/orchestr8/test/"],
        cwd=ROOT, capture_output=True, text=True, timeout=NODE_TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.integration
def test_forwarded_bus_events_count_once_in_a_real_exporter(
    exporter_factory: ExporterFactory, tmp_path: Path
) -> None:
    node = support.require_binary("node", "nodejs")
    exporter = exporter_factory()
    stderr = tmp_path / "driver.stderr"
    with _driver(node, exporter, stderr) as (stdin, stdout):
        first = _stats(stdout, stderr)
        assert first["rejected"] == 0, first
        assert first["dropped"] == 0, first
        assert first["forwarded"] > 0, first
        assert first["duplicates"] == 0, first
        counted = _wait_for_counts(exporter)
        fleet = _fleet(counted)

        stdin.write("resend\n")
        stdin.close()
        second = _stats(stdout, stderr)
    assert second["duplicates"] == first["forwarded"], second
    assert second["forwarded"] == second["rejected"] == second["dropped"] == 0, second
    # Compared once the exporter has seen every duplicate, so that a late count would show.
    after = _fleet(wait_until(
        lambda: _duplicates_counted(exporter, second["duplicates"]), METRICS_TIMEOUT,
        describe="the resent events counted as duplicates"))
    assert after == fleet, _differences(fleet, after)


def _driver(node: str, exporter: ExporterProcess,
            stderr_path: Path) -> AbstractContextManager[tuple[TextIO, TextIO]]:
    """drive-real-exporter.mjs: one JSON line of stats per pass; the resend waits for stdin."""
    return support.node_script(node, DRIVER, env={"EXPORTER_URL": exporter.url,
                                                  "EXPORTER_TOKEN": exporter.token},
                               stderr_path=stderr_path, timeout=NODE_TIMEOUT)


def _stats(stdout: TextIO, stderr: Path) -> dict[str, Any]:
    line = stdout.readline()
    assert line, f"the driver printed no stats:\n{stderr.read_text()}"
    stats: dict[str, Any] = json.loads(line)
    return stats


def _wait_for_counts(exporter: ExporterProcess) -> Metrics:
    """The metrics once they show every forwarded event (the exporter applies them after it
    answers), or a failure showing what they showed and the exporter's log."""
    seen: dict[str, float] = {}

    def counted() -> Metrics | None:
        metrics = exporter.metrics()
        seen.update(_counts(metrics))
        return metrics if seen == EXPECTED else None

    try:
        return wait_until(counted, METRICS_TIMEOUT, describe="the forwarded events' counts")
    except TimeoutError:
        pytest.fail(f"expected {EXPECTED}\nseen     {seen}\n"
                    f"exporter log:\n{exporter.log_tail(60)}", pytrace=False)


def _duplicates_counted(exporter: ExporterProcess, duplicates: int) -> Metrics | None:
    metrics = exporter.metrics()
    counted = _sum(metrics, "orchestrator_exporter_events_duplicate_total")
    return metrics if counted == duplicates else None


def _counts(metrics: Metrics) -> dict[str, float]:
    return {
        "runs completed": _sum(metrics, "orchestrator_workflow_runs_total", status="completed"),
        "runs failed": _sum(metrics, "orchestrator_workflow_runs_total", status="failed"),
        "runs cancelled": _sum(metrics, "orchestrator_workflow_runs_total", status="cancelled"),
        "runs started": _sum(metrics, "orchestrator_workflow_runs_started_total"),
        "steps completed": _sum(metrics, "orchestrator_steps_total", status="completed"),
        "steps failed": _sum(metrics, "orchestrator_steps_total", status="failed"),
        "steps skipped": _sum(metrics, "orchestrator_steps_total", status="skipped"),
        "steps cancelled": _sum(metrics, "orchestrator_steps_total", status="cancelled"),
        "step TIMEOUT errors": _sum(metrics, "orchestrator_errors_total", origin="step",
                                    error_type="TIMEOUT"),
        "orchestr8 events ignored": _sum(metrics, "orchestrator_exporter_events_ignored_total",
                                         dialect="orchestr8"),
    }


def _sum(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum of the samples of `name` that have at least these labels."""
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in metrics.items()
               if sample == name and wanted <= sample_labels)


def _fleet(metrics: Metrics) -> Metrics:
    """The samples that describe the fleet, not the exporter's own work."""
    return {(name, labels): value for (name, labels), value in metrics.items()
            if name.startswith("orchestrator_") and not name.startswith("orchestrator_exporter_")}


def _differences(before: Metrics, after: Metrics) -> str:
    lines = []
    for key in sorted(set(before) | set(after), key=lambda key: (key[0], sorted(key[1]))):
        if before.get(key) != after.get(key):
            name, labels = key
            lines.append(f"{name}{dict(sorted(labels))}: {before.get(key)} -> {after.get(key)}")
    return "the resend changed fleet metrics:\n" + "\n".join(lines)
