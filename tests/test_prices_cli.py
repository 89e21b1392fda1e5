"""`orchestrator-exporter prices`: the models seen, how each is priced, the unpriced ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from exporter.callback import MonitorCallback
from exporter.config import parse_config
from exporter.service import build_exporter
from exporter.settings import Settings


def run_prices(url: str, *extra: str, config: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "exporter", "prices", "--database-url", url, *extra]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_prices_lists_seen_models_and_names_the_unpriced(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    exporter = build_exporter(Settings(database_url=url), registry=CollectorRegistry(),
                              config=parse_config({}))
    exporter.start()
    callback = MonitorCallback(exporter.pipeline, strict=True)
    for event in (
        {"type": "agent.created", "agent_id": "a", "role": "BUILDER",
         "model": "claude-opus-4-6"},
        {"type": "agent.usage", "agent_id": "a", "input_tokens": 1_000_000},
        {"type": "agent.created", "agent_id": "b", "role": "TESTER", "model": "claude-opus-4-9"},
        {"type": "agent.usage", "agent_id": "b", "input_tokens": 10},
        {"type": "agent.usage", "agent_id": "b", "output_tokens": 10},
    ):
        callback.emit(event)
    assert callback.flush(10)
    exporter.close()

    answer = run_prices(url, "--json")
    assert answer.returncode == 1, answer.stderr  # a seen model is unpriced
    lines = {line["model"]: line for line in map(orjson.loads, answer.stdout.splitlines())}
    assert set(lines) == {"claude-opus-4-6", "claude-opus-4-9"}
    assert lines["claude-opus-4-6"]["priced_as"] == "claude-opus-4-6"
    assert lines["claude-opus-4-6"]["cost_usd"] == 5.0
    assert lines["claude-opus-4-6"]["usd_per_million"]["cache_write_1h"] == 10.0
    assert lines["claude-opus-4-9"] | {"cost_usd": 0} == {
        "model": "claude-opus-4-9", "priced_as": None, "seen": True, "unpriced_events": 2,
        "cost_usd": 0, "usd_per_million": None, "context_window": None}

    table = run_prices(url)
    assert "claude-opus-4-9  UNPRICED" in table.stdout
    assert "1 unpriced: add them under `pricing:`" in table.stdout

    config = tmp_path / "config.yml"
    config.write_text("pricing:\n  claude-opus-4-9: {input: 5, output: 25, cache_read: 0.5, "
                      "cache_write: 6.25}\n")
    fixed = run_prices(url, "--json", "--all", config=config)
    assert fixed.returncode == 0, fixed.stderr
    models = [orjson.loads(line) for line in fixed.stdout.splitlines()]
    assert len(models) > 20  # the whole table with --all
    assert next(line for line in models if line["model"] == "claude-opus-4-9")["priced_as"] \
        == "claude-opus-4-9"
