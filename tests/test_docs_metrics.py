"""docs/metrics.md lists exactly the metric families /metrics exposes, with their labels."""

from __future__ import annotations

import re
import time
from pathlib import Path

from streams import mixed_stream

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(orchestrator_[a-z_]+)` \| (counter|gauge|histogram) \|([a-z_, ]*)\|")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def documented() -> dict[str, tuple[str, frozenset[str]]]:
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            labels = frozenset(label.strip() for label in match[3].split(",") if label.strip())
            rows[match[1]] = (match[2], labels)
    return rows


def exposed(text: str) -> dict[str, tuple[str, set[frozenset[str]]]]:
    families: dict[str, tuple[str, set[frozenset[str]]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            current = name
            families[name] = (kind, set())
        elif line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            labels = frozenset(LABEL.findall(match[2] or "")) - {"le"}
            families[current][1].add(labels)
    return families


def test_docs_list_every_orchestrator_metric_with_its_labels(exporter_factory):
    exporter = exporter_factory(config="budgets: [{name: daily, limit_usd: 10, period: day}]")
    for batch in mixed_stream(total=2000, start=time.time() - 600).batches:
        assert exporter.post_events(batch).status_code == 200
    still_open = [{"type": "task.submitted", "task_id": "open-task", "task_type": "docs"},
                  {"type": "workflow.started", "run_id": "open-run", "workflow": "release"},
                  # a real source's event with nothing to count, and a step of no known run
                  {"type": "retry.attempted", "stepId": "build", "attempt": 1, "delay": 500},
                  {"type": "step.completed", "stepId": "nowhere", "output": None},
                  # what only Claude Code reports (its OTLP counters)
                  {"type": "agent.activity", "agent_id": "claude-session", "lines_added": 3,
                   "lines_removed": 1, "commits": 1, "pull_requests": 1, "active_seconds": 2.5,
                   "active_type": "cli", "edit_tool": "Edit", "edit_decision": "accept"}]
    assert exporter.post_events(still_open).status_code == 200
    families = {name: value for name, value in exposed(exporter.metrics_text()).items()
                if name.startswith("orchestrator_")}
    docs = documented()
    assert len(docs) >= 40
    assert sorted(set(families) - set(docs)) == [], "exposed but not documented"
    assert sorted(set(docs) - set(families)) == [], "documented but not exposed"
    for name, (kind, label_sets) in families.items():
        documented_kind, documented_labels = docs[name]
        assert kind == documented_kind, name
        assert label_sets, f"{name} has no sample in this stream"
        assert label_sets == {documented_labels}, name
