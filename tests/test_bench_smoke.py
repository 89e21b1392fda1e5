"""`python -m bench` runs every code path at tiny sizes and reports a number for each measurement.

Timing is never asserted here: the numbers of a tiny run on a shared machine mean nothing; the
real run and its results are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--events", "1500", "--ingest-events", "500", "--rounds", "1",
        "--agents", "20", "--scrapes", "3", "--callback-events", "300", "--max-wait", "0"]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_bench_reports_every_measurement_with_its_baseline(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--json", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "HTTP ingest" in completed.stdout and "GET /metrics" in completed.stdout
    results = json.loads(output.read_text())

    numbers = {
        "ingest": results["ingest"]["events_per_second"],
        "naive store": results["naive_store"]["rows_per_second"],
        "ingest ratio": results["ingest"]["ratio_to_naive"],
        "scraped ingest": results["ingest_scraped"]["events_per_second"],
        "scrape p95": results["metrics"]["p95_ms"],
        "generate_latest p95": results["metrics"]["baseline"]["p95_ms"],
        "callback": results["callback"]["call_us"],
        "counter inc": results["callback"]["counter_inc_us"],
        "rss": results["memory"]["rss_bytes"],
        "start-up": results["memory"]["startup_seconds"],
    }
    assert all(_positive(value) for value in numbers.values()), numbers
    assert math.isfinite(results["ingest_scraped"]["drop_percent"])
    assert results["metrics"]["live_agents"] == 20
    assert results["metrics"]["samples"] == results["metrics"]["baseline"]["samples"]
    assert results["memory"]["events"] >= 1500
    assert results["memory"]["accepted_after_restart"] == results["memory"]["events"]
    assert all(len(phase["load"]) == 2 for phase in (
        results["ingest"], results["metrics"], results["callback"], results["memory"]))


def test_ab_loads_each_checkout_in_turn_and_reports_a_ratio_to_the_first() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.ab", "--slice-events", "500", "--slices", "2",
         "--agents", "10", str(REPOSITORY), f"{REPOSITORY}:EXPORTER_PARSE_WORKERS=0"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=180, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["slice 1", "slice 2"]
    summaries = lines[2:]
    assert len(summaries) == 2
    assert summaries[0].startswith(f"{REPOSITORY}: median ")
    assert "ratio to the first: median 1.000 (from 1.000 to 1.000)" in summaries[0]
    assert summaries[1].startswith(f"{REPOSITORY}:EXPORTER_PARSE_WORKERS=0: median ")
    rejected = subprocess.run([sys.executable, "-m", "bench.ab", str(REPOSITORY), "/nonexistent"],
                              cwd=REPOSITORY, capture_output=True, text=True, timeout=60,
                              check=False)
    assert rejected.returncode == 2 and "holds no exporter package" in rejected.stderr
