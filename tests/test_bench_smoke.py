"""`python -m bench` and `python -m bench.reads` run every code path at tiny sizes and report a
number for each measurement.

Timing is never asserted here: the numbers of a tiny run on a shared machine mean nothing; the
real run and its results are in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--events", "1500", "--ingest-events", "500", "--rounds", "1",
        "--agents", "20", "--scrapes", "3", "--callback-events", "300", "--max-wait", "0"]


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def _bench(module: str, arguments: list[str], output: Path, *shown: str) -> dict[str, Any]:
    """Run `python -m module`; its JSON results, once its table has shown each of `shown`."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments, "--json", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert all(text in completed.stdout for text in shown), completed.stdout
    results: dict[str, Any] = json.loads(output.read_text())
    return results


def test_bench_reports_every_measurement_with_its_baseline(tmp_path: Path) -> None:
    results = _bench("bench", TINY, tmp_path / "results.json", "HTTP ingest", "GET /metrics")

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


# Every measurement after the fill restarts the exporter on a copy of the filled ledger: the
# fewest blocks and rounds keep those restarts, and the test, short.
READS_TINY = ["--quick", "--events", "3000", "--requests", "4", "--blocks", "1",
              "--subscribers", "3", "--stream-seconds", "1", "--ratio-events", "1000",
              "--ratio-rounds", "1", "--max-wait", "0"]


def test_reads_bench_reports_every_number_beside_its_baseline(tmp_path: Path) -> None:
    results = _bench("bench.reads", READS_TINY, tmp_path / "reads.json", "GET /agents",
                     "SSE delivery")
    assert results["fleet"]["tasks"] == 60 and results["fleet"]["agents"] == 180
    assert results["fill"]["events_accepted"] == 3000
    endpoints = results["reads"]["endpoints"]
    assert len(endpoints) == 14
    export, delivery, alone, ratio = (results["export"], results["delivery"],
                                      results["delivery_baseline"], results["ratio"])
    numbers = {
        "max ingest": results["fill"]["events_per_second"],
        **{f"{endpoint['name']} {kind} {key}": endpoint[kind][key]
           for endpoint in endpoints for kind in ("paced", "plain")
           for key in ("p50_ms", "p95_ms", "max_ms")},
        "paced ingest during reads": results["reads"]["ingest"]["events_per_second"],
        "export": export["paced"]["events_per_second"],
        "export without ingest": export["plain"]["events_per_second"],
        "sqlite3 read": export["sqlite3"]["rows_per_second"],
        "rss": export["paced"]["rss_before_bytes"],
        "paced ingest during export": export["ingest"]["events_per_second"],
        # An event may reach a subscriber before its ingest answer reaches the pacer, so a
        # median may be negative on a busy machine; the tail never is.
        "delivery p95": delivery["p95_ms"], "delivery max": delivery["max_ms"],
        "one subscriber p95": alone["p95_ms"], "one subscriber max": alone["max_ms"],
        "paced ingest during delivery": delivery["ingest"]["events_per_second"],
        "ingest with subscribers": ratio["with_events_per_second"],
        "ingest without subscribers": ratio["events_per_second"],
        "ingest beside the burner": ratio["burned_events_per_second"],
        "the burner's cores": ratio["burner_cores"],
    }
    assert all(_positive(value) for value in numbers.values()), numbers
    assert math.isfinite(delivery["p50_ms"]) and math.isfinite(ratio["drop_percent"])
    assert export["paced"]["rss_growth_bytes"] >= 0 and export["plain"]["events"] >= 3000
    for stream, subscribers in ((delivery, 3), (alone, 1)):
        assert stream["subscribers"] == subscribers and stream["missing"] == 0
        assert stream["deliveries"] == stream["events"] * subscribers > 0
    assert len(ratio["with"]) == len(ratio["without"]) == len(ratio["burned"]) == 1
    assert all(len(results[phase]["load"]) == 2 for phase in (
        "fill", "reads", "export", "delivery", "delivery_baseline", "ratio"))


OPERATIONS_TINY = ["--quick", "--history-events", "2000", "--history-samples", "2",
                   "--retention-slices", "3", "--slice-events", "1000", "--prune-events", "2000",
                   "--prune-ingest-events", "1000", "--prune-rounds", "1", "--max-wait", "0",
                   "--memory-debug"]


def test_operations_bench_reports_memory_ledger_size_and_pruning(tmp_path: Path) -> None:
    results = _bench("bench.operations", OPERATIONS_TINY, tmp_path / "operations.json",
                     "exporter RSS", "ledger file after each simulated day", "while the exporter "
                     "prunes", "Memory debug")
    history, retention, pruning = results["history"], results["retention"], results["pruning"]
    samples = history["samples"]
    assert [sample["events"] for sample in samples] == [1000, 2000]
    days = retention["slices"]
    assert [day["accepted"] for day in days] == [1000] * 3
    # A day of retention: from day 2 on, each pass removes the day before, whose ids stay.
    assert [day["pruned"]["events"] for day in days] == [0, 1000, 1000]
    assert days[-1]["events"] == 1000 and days[-1]["event_ids"] == 2000
    assert pruning["filled"]["events"] == 2000
    numbers = {
        "idle rss": history["idle"]["rss_bytes"],
        **{f"rss at {sample['events']}": sample["rss_bytes"] for sample in samples},
        **{f"server rss at {sample['events']}": sample["server_rss_bytes"]
           for sample in samples},
        "ledger bytes per event": history["ledger_bytes_per_event"],
        "history ingest": history["events_per_second"],
        **{f"ledger file day {day['day']}": day["file_bytes"] for day in days},
        "ingest while pruning": pruning["events_per_second"],
        "ingest without pruning": pruning["without_events_per_second"],
        "scrape max while pruning": pruning["scrape_max_ms"],
        "scrape max without": pruning["without_scrape_max_ms"],
    }
    assert all(_positive(value) for value in numbers.values()), numbers
    assert math.isfinite(history["growth_percent"]) and math.isfinite(pruning["drop_percent"])
    assert math.isfinite(retention["growth_last_half_percent"])
    assert pruning["with"][0]["pruned_at_end"] > 0 and pruning["without"][0]["pruned_at_end"] == 0
    paced = pruning["paced"]
    for run in (paced["with"], paced["without"]):  # half speed, scraped throughout
        assert run["ingest"]["events"] > 0 and run["ingest"]["failures"] == 0
        assert run["scrapes"] > 0 and _positive(run["scrape_max_ms"])
    assert paced["with"]["pruned_at_end"] > 0 and paced["without"]["pruned_at_end"] == 0
    debug = results["memory_debug"]["samples"]
    assert len(debug) == 2 and debug[-1]["sets"]["ended tasks remembered"] == 40
    assert debug[-1]["sqlite_cache_bytes"]["writer"] > 0 and debug[-1]["rss_bytes"] > 0
    assert all(len(results[phase]["load"]) == 2 for phase in ("history", "retention", "pruning"))
