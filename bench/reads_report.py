"""The results of `python -m bench.reads` as one table: each number, its baseline, the target."""

from __future__ import annotations

from typing import Any

from bench.report import MIB, grid, load_cell, title, verdict

HEADER = ("measurement", "result (under paced ingest)", "baseline (same run)", "ratio",
          "target", "load 1m; most CPU of other processes")
LIST_P95_MS = 50.0
COSTS_P95_MS = 100.0
EXPORT_EVENTS_PER_SECOND = 100_000
# "Flat memory": an export held in memory would grow with what it sent (about 100 MiB over
# the second half of a million events); SQLite's page cache (64 MiB a connection) fills early
# and then stays, so the growth that counts is the second half's.
EXPORT_SECOND_HALF_MIB = 16.0
DELIVERY_P95_MS = 50.0
INGEST_DROP_PERCENT = 10.0


def _latency(numbers: dict[str, float]) -> str:
    return f"{numbers['p50_ms']:.1f} / {numbers['p95_ms']:.1f} / {numbers['max_ms']:.1f} ms"


def _failed(ingest: dict[str, Any]) -> str:
    """What went wrong with the paced ingest, if anything."""
    if not ingest["failures"]:
        return ""
    return (f"; {ingest['failures']} paced batches failed, first: "
            f"{ingest['first_failure'][:60]}")


def _target(endpoint: dict[str, Any]) -> str:
    p95 = endpoint["paced"]["p95_ms"]
    if endpoint["name"].startswith("GET /costs"):
        return f"p95 ≤ {COSTS_P95_MS:.0f} ms {verdict(p95 <= COSTS_P95_MS)}"
    if endpoint["is_list"]:
        return f"p95 ≤ {LIST_P95_MS:.0f} ms {verdict(p95 <= LIST_P95_MS)}"
    return "— (one entity)"


def _read_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    reads = results["reads"]
    ingest = reads["ingest"]
    rows: list[tuple[str, ...]] = [
        (f"{endpoint['name']}: p50 / p95 / max ({endpoint['requests']} requests)",
         _latency(endpoint["paced"]), f"no ingest {_latency(endpoint['plain'])}",
         f"{endpoint['paced']['p95_ms'] / endpoint['plain']['p95_ms']:.2f}x p95",
         _target(endpoint), load_cell(reads))
        for endpoint in reads["endpoints"]]
    rows.append((f"  paced ingest meanwhile (aimed at {ingest['rate']:,.0f}/s)",
                 f"{ingest['events_per_second']:,.0f} events/s (batches up to "
                 f"{ingest['most_late_ms']:,.0f} ms late{_failed(ingest)})", "—", "—", "—",
                 load_cell(reads)))
    return rows


def _export_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    export = results["export"]
    paced, plain, floor = export["paced"], export["plain"], export["sqlite3"]
    rate = paced["events_per_second"]

    def memory(numbers: dict[str, Any]) -> str:
        return (f"{numbers['rss_before_bytes'] / MIB:.0f} → {numbers['rss_peak_bytes'] / MIB:.0f}"
                f" MiB (+{numbers['rss_growth_bytes'] / MIB:.1f}; second half "
                f"+{numbers['rss_second_half_growth_bytes'] / MIB:.1f})")

    growth = max(paced["rss_second_half_growth_bytes"],
                 plain["rss_second_half_growth_bytes"]) / MIB
    return [
        (f"GET /events/export, whole ledger ({paced['events']:,} events, "
         f"{paced['bytes'] / MIB:,.0f} MiB), ingest at "
         f"{export['ingest']['events_per_second']:,.0f}/s{_failed(export['ingest'])}",
         f"{rate:,.0f} events/s",
         f"no ingest {plain['events_per_second']:,.0f}/s; Python sqlite3 alone "
         f"{floor['rows_per_second']:,.0f} rows/s",
         f"{rate / plain['events_per_second']:.2f}x",
         f"≥ {EXPORT_EVENTS_PER_SECOND:,}/s {verdict(rate >= EXPORT_EVENTS_PER_SECOND)}",
         load_cell(export)),
        ("  exporter RSS during the export: before → peak (growth; in the second half)",
         memory(paced), f"no ingest {memory(plain)}", "—",
         f"flat: second half ≤ +{EXPORT_SECOND_HALF_MIB:.0f} MiB "
         f"{verdict(growth <= EXPORT_SECOND_HALF_MIB)}", load_cell(export)),
    ]


def _stream_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    stream, alone, ratio = results["delivery"], results["delivery_baseline"], results["ratio"]
    subscribers = stream["subscribers"]
    p95 = stream["p95_ms"]
    drop = ratio["drop_percent"]
    return [
        (f"SSE delivery, ingest answer → subscriber, {subscribers} subscribers: p50 / p95 / "
         f"max ({stream['events']:,} events each at "
         f"{stream['ingest']['events_per_second']:,.0f}/s{_failed(stream['ingest'])}; "
         f"{stream['cut_offs']} cut-offs, "
         f"{stream['missing']:,} missing; subscribers' process "
         f"{stream['subscriber_cores']:.2f} cores)",
         _latency(stream), f"1 subscriber {_latency(alone)}",
         f"{p95 / alone['p95_ms']:.2f}x p95",
         f"p95 ≤ {DELIVERY_P95_MS:.0f} ms {verdict(p95 <= DELIVERY_P95_MS)}", load_cell(stream)),
        (f"max HTTP ingest with {subscribers} subscribers reading (median of "
         f"{len(ratio['with'])}; their process {ratio['subscriber_cores']:.2f} cores; "
         f"{ratio['cut_offs']} cut-offs)",
         f"{ratio['with_events_per_second']:,.0f} events/s "
         f"({ratio['with_exporter_cpu_us_per_event']:.0f} µs CPU/event)",
         f"no subscribers {ratio['events_per_second']:,.0f} events/s "
         f"({ratio['exporter_cpu_us_per_event']:.0f} µs)",
         f"{drop:.1f}% drop",
         f"drop ≤ {INGEST_DROP_PERCENT:.0f}% {verdict(drop <= INGEST_DROP_PERCENT)}",
         load_cell(ratio)),
        (f"  control: max HTTP ingest beside a process spending as much CPU "
         f"({ratio['burner_cores']:.2f} cores), no subscribers (median of "
         f"{len(ratio['burned'])})",
         f"{ratio['burned_events_per_second']:,.0f} events/s "
         f"({ratio['burned_exporter_cpu_us_per_event']:.0f} µs CPU/event)",
         f"no subscribers {ratio['events_per_second']:,.0f} events/s",
         f"{ratio['burned_drop_percent']:.1f}% drop",
         "— (the part of the drop above that the subscribers' own CPU costs)",
         load_cell(ratio)),
    ]


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(measurement, result, baseline, ratio, target, load) for each number of the run."""
    fill, options = results["fill"], results["options"]
    return [
        (f"max HTTP ingest, fresh ledger to {fill['events']:,} events, batches of "
         f"{options['batch_size']}, {options['connections']} connections",
         f"{fill['events_per_second']:,.0f} events/s "
         f"({fill['exporter_cpu_us_per_event']:.0f} µs CPU/event)", "—", "—",
         f"(paced ingest below: half, {fill['events_per_second'] / 2:,.0f}/s)", load_cell(fill)),
        *_read_rows(results), *_export_rows(results), *_stream_rows(results),
    ]


def _title(results: dict[str, Any]) -> list[str]:
    fleet = results["fleet"]
    return [
        *title(results, "read API and live stream benchmark"),
        f"ledger after the fill: {results['fill']['events_accepted']:,} events, "
        f"{fleet['tasks']:,} tasks, {fleet['agents']:,} agents, {fleet['runs']:,} runs; every "
        "measurement starts on a copy of it",
    ]


def render(results: dict[str, Any], *, markdown: bool) -> str:
    """Aligned plain text for a terminal, or Markdown for docs/benchmarks.md."""
    return grid(_title(results), HEADER, rows(results), markdown=markdown)
