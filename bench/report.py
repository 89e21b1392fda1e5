"""The results as a readable table: one row per measurement, its baseline, ratio and target."""

from __future__ import annotations

from typing import Any

MIB = 1024 * 1024


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def load_cell(phase: dict[str, Any]) -> str:
    """The load average before and after a phase, and the cores other processes used."""
    before, after = phase["load"]
    return f"{before:.2f} → {after:.2f}; others {phase['foreign_cores']:.2f} cores"


def verdict(passed: bool) -> str:
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
         f"≥ 50,000/s {verdict(rate >= 50_000)}", load_cell(ingest)),
        (f"2 GET /metrics, {metrics['live_agents']:,} live agents, {metrics['samples']:,} "
         f"samples, {metrics['scrapes']} scrapes: p50 / p95 / p99",
         f"{metrics['p50_ms']:.1f} / {metrics['p95_ms']:.1f} / {metrics['p99_ms']:.1f} ms",
         f"generate_latest, {baseline['samples']:,} samples: {baseline['p50_ms']:.1f} / "
         f"{baseline['p95_ms']:.1f} / {baseline['p99_ms']:.1f} ms",
         f"{metrics['ratio_p50']:.2f}x p50, {metrics['ratio_p95']:.2f}x p95",
         f"p95 ≤ 50 ms {verdict(metrics['p95_ms'] <= 50)}", load_cell(metrics)),
        ("3 HTTP ingest while /metrics is scraped every 1 s "
         f"(scrape p50 {scraped['scrape_p50_ms']:.1f} ms, max {scraped['scrape_max_ms']:.1f} ms)",
         f"{_rate(scraped['events_per_second'])} events/s",
         f"without scraping {_rate(rate)} events/s",
         f"{scraped['drop_percent']:.1f}% drop",
         f"drop ≤ 10% {verdict(scraped['drop_percent'] <= 10)}", load_cell(scraped)),
        (f"4 in-process MonitorCallback, {callback['events']:,} events: per call / "
         "until durable (flush)",
         f"{callback['call_us']:.1f} / {callback['durable_us']:.1f} µs/event",
         f"Counter.labels(...).inc() {callback['counter_inc_us']:.2f} µs",
         f"{callback['ratio_call']:.0f}x per call", "—", load_cell(callback)),
        (f"5 exporter RSS after {memory['events']:,} events (peak {memory['hwm_bytes'] / MIB:.0f}"
         f" MiB; ledger {memory['ledger_bytes'] / MIB:.0f} MiB)",
         f"{memory['rss_bytes'] / MIB:.0f} MiB", "—", "—", "—", load_cell(memory)),
        (f"5 start-up on that ledger, spawn to /ready 200 (empty ledger "
         f"{memory['startup_empty_seconds']:.2f} s)",
         f"{memory['startup_seconds']:.2f} s", "—", "—", "—", load_cell(memory)),
        (f"  ingest rate over those {memory['events']:,} events",
         f"{_rate(memory['events_per_second'])} events/s", "—", "—", "—", load_cell(memory)),
    ]


def title(results: dict[str, Any], name: str) -> list[str]:
    """The run's first lines: which benchmark, when, what code, what machine, how busy."""
    environment, options = results["environment"], results["options"]
    modified = " + uncommitted changes in exporter/" if environment["exporter_modified"] else ""
    return [
        f"orchestrator-exporter {name}, {environment['date']}, commit "
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
    return grid(title(results, "benchmark"), HEADER, rows(results), markdown=False)


def markdown(results: dict[str, Any]) -> str:
    """The same as a Markdown table, for docs/benchmarks.md."""
    return grid(title(results, "benchmark"), HEADER, rows(results), markdown=True)

def grid(title: list[str], header: tuple[str, ...], body: list[tuple[str, ...]], *,
         markdown: bool) -> str:
    """Title lines and a table: aligned plain text for a terminal, or Markdown for the docs."""
    if markdown:
        return "\n".join([*(f"{text}  " for text in title), "",
                          "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *("| " + " | ".join(cell.strip() for cell in row) + " |"
                            for row in body)])
    widths = [max(len(row[column]) for row in (header, *body)) for column in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                         ).rstrip()

    return "\n".join([*title, "", line(header), line(tuple("-" * width for width in widths)),
                      *map(line, body)])
