"""The results as a readable table: one row per measurement, its baseline, ratio and target."""

from __future__ import annotations

from typing import Any

MIB = 1024 * 1024


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _load(phase: dict[str, Any]) -> str:
    before, after = phase["load"]
    return f"{before:.2f} → {after:.2f}; others {phase['foreign_cores']:.2f} cores"


def _verdict(passed: bool) -> str:
    return "met" if passed else "MISSED"


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(measurement, result, baseline, ratio, target, load) for each number of the run."""
    options = results["options"]
    ingest, scraped, naive = results["ingest"], results["ingest_scraped"], results["naive_store"]
    metrics, callback, memory = results["metrics"], results["callback"], results["memory"]
    baseline = metrics["baseline"]
    rate = ingest["events_per_second"]
    return [
        (f"1 HTTP ingest, batches of {options['batch_size']}, "
         f"{options['connections']} connections (median of {len(ingest['rounds'])})",
         f"{_rate(rate)} events/s ({ingest['exporter_cpu_us_per_event']:.0f} µs CPU/event, "
         f"{ingest['exporter_cores']:.1f} cores)",
         f"naive sqlite3 store {_rate(naive['rows_per_second'])} rows/s ({naive['rows']:,} rows;"
         f" others {naive['foreign_cores']:.2f} cores)",
         f"{ingest['ratio_to_naive']:.2f}x",
         f"≥ 50,000/s {_verdict(rate >= 50_000)}", _load(ingest)),
        (f"2 GET /metrics, {metrics['live_agents']:,} live agents, {metrics['samples']:,} "
         f"samples, {metrics['scrapes']} scrapes: p50 / p95 / p99",
         f"{metrics['p50_ms']:.1f} / {metrics['p95_ms']:.1f} / {metrics['p99_ms']:.1f} ms",
         f"generate_latest, {baseline['samples']:,} samples: {baseline['p50_ms']:.1f} / "
         f"{baseline['p95_ms']:.1f} / {baseline['p99_ms']:.1f} ms",
         f"{metrics['ratio_p50']:.2f}x p50, {metrics['ratio_p95']:.2f}x p95",
         f"p95 ≤ 50 ms {_verdict(metrics['p95_ms'] <= 50)}", _load(metrics)),
        ("3 HTTP ingest while /metrics is scraped every 1 s "
         f"(scrape p50 {scraped['scrape_p50_ms']:.1f} ms, max {scraped['scrape_max_ms']:.1f} ms)",
         f"{_rate(scraped['events_per_second'])} events/s",
         f"without scraping {_rate(rate)} events/s",
         f"{scraped['drop_percent']:.1f}% drop",
         f"drop ≤ 10% {_verdict(scraped['drop_percent'] <= 10)}", _load(scraped)),
        (f"4 in-process MonitorCallback, {callback['events']:,} events: per call / "
         "until durable (flush)",
         f"{callback['call_us']:.1f} / {callback['durable_us']:.1f} µs/event",
         f"Counter.labels(...).inc() {callback['counter_inc_us']:.2f} µs",
         f"{callback['ratio_call']:.0f}x per call", "—", _load(callback)),
        (f"5 exporter RSS after {memory['events']:,} events (peak {memory['hwm_bytes'] / MIB:.0f}"
         f" MiB; ledger {memory['ledger_bytes'] / MIB:.0f} MiB)",
         f"{memory['rss_bytes'] / MIB:.0f} MiB", "—", "—", "—", _load(memory)),
        (f"5 start-up on that ledger, spawn to /ready 200 (empty ledger "
         f"{memory['startup_empty_seconds']:.2f} s)",
         f"{memory['startup_seconds']:.2f} s", "—", "—", "—", _load(memory)),
        (f"  ingest rate over those {memory['events']:,} events",
         f"{_rate(memory['events_per_second'])} events/s", "—", "—", "—", _load(memory)),
    ]


def _title(results: dict[str, Any]) -> list[str]:
    environment, options = results["environment"], results["options"]
    modified = " + uncommitted changes in exporter/" if environment["exporter_modified"] else ""
    return [
        f"orchestrator-exporter benchmark, {environment['date']}, commit "
        f"{environment['commit']}{modified}",
        f"{environment['cpu_count']} CPUs, Python {environment['python']}, SQLite "
        f"{environment['sqlite']}, {environment['platform']}; synchronous="
        f"{options['synchronous']}; load average {results['load']['before']:.2f} before, "
        f"{results['load']['after']:.2f} after",
    ]


HEADER = ("measurement", "result", "baseline (same run)", "ratio", "target",
          "load 1m; CPU of other processes")


def table(results: dict[str, Any]) -> str:
    """Aligned plain text for a terminal."""
    body = rows(results)
    widths = [max(len(row[column]) for row in (HEADER, *body)) for column in range(len(HEADER))]

    def line(row: tuple[str, ...]) -> str:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        return "  ".join(cells).rstrip()

    separator = tuple("-" * width for width in widths)
    return "\n".join([*_title(results), "", line(HEADER), line(separator),
                      *(line(row) for row in body)])


def markdown(results: dict[str, Any]) -> str:
    """The same as a Markdown table, for docs/benchmarks.md."""
    lines = [*(f"{text}  " for text in _title(results)), "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines.extend("| " + " | ".join(cell.strip() for cell in row) + " |" for row in rows(results))
    return "\n".join(lines)
