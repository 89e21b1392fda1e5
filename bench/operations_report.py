"""The results of `python -m bench.operations`: one table of the targets, then the memory and
ledger-size series behind them."""

from __future__ import annotations

from typing import Any

from bench.report import MIB, grid, load_cell, title, verdict

HEADER = ("measurement", "result", "baseline (same run)", "ratio", "target",
          "load 1m; most CPU of other processes")
RSS_GROWTH_PERCENT = 10.0
IDLE_RSS_MIB = 150.0
# "Levels off": over the second half of the simulated days the file grows by less than this.
LEDGER_GROWTH_PERCENT = 10.0
INGEST_DROP_PERCENT = 10.0
SCRAPE_MAX_MS = 100.0


def _mib(value: float) -> str:
    return f"{value / MIB:,.0f} MiB"


def _history_rows(history: dict[str, Any]) -> list[tuple[str, ...]]:
    samples, idle = history["samples"], history["idle"]
    first, last = samples[0], samples[-1]
    growth = history["growth_percent"]
    return [
        (f"exporter RSS (server + parse workers) after {first['events']:,} → "
         f"{last['events']:,} events of the workload",
         f"{_mib(first['rss_bytes'])} → {_mib(last['rss_bytes'])} (server "
         f"{_mib(first['server_rss_bytes'])} → {_mib(last['server_rss_bytes'])}; peak "
         f"{_mib(last['hwm_bytes'])})",
         f"idle, empty ledger {_mib(idle['rss_bytes'])}", f"{growth:+.1f}%",
         f"≤ +{RSS_GROWTH_PERCENT:.0f}% {verdict(growth <= RSS_GROWTH_PERCENT)}; idle ≤ "
         f"{IDLE_RSS_MIB:.0f} MiB {verdict(idle['rss_bytes'] / MIB <= IDLE_RSS_MIB)}",
         load_cell(history)),
        (f"  ledger bytes per event at {last['events']:,} events",
         f"{history['ledger_bytes_per_event']:,.0f} B/event ({_mib(last['ledger_bytes'])})",
         f"at {first['events']:,}: {first['ledger_bytes'] / first['events']:,.0f} B/event",
         "—", "reported", load_cell(history)),
        ("  ingest over that history (median of the slices; the next slice built meanwhile)",
         f"{history['events_per_second']:,.0f} events/s "
         f"({history['exporter_cpu_us_per_event']:.0f} µs CPU/event)", "—", "—", "—",
         load_cell(history)),
    ]


def _unpruned_bytes(slices: list[dict[str, Any]]) -> float:
    """The ledger all the days would make without retention, at day 1's bytes per event."""
    first = slices[0]
    return float(sum(day["accepted"] for day in slices) * first["file_bytes"] / first["accepted"])


def _retention_rows(retention: dict[str, Any]) -> list[tuple[str, ...]]:
    slices = retention["slices"]
    growth = retention["growth_last_half_percent"]
    middle = slices[len(slices) // 2]
    return [
        (f"ledger file after each simulated day's pruning ({retention['slice_events']:,} "
         f"events a day, retention {retention['retention_days']} day)",
         ", ".join(f"{entry['file_bytes'] / MIB:.0f}" for entry in slices) + " MiB",
         f"no retention: about {_mib(_unpruned_bytes(slices))} ({len(slices)} days at day "
         "1's bytes per event)",
         f"{growth:+.1f}% from day {middle['day']} to {slices[-1]['day']}",
         f"levels off (≤ +{LEDGER_GROWTH_PERCENT:.0f}%) "
         f"{verdict(growth <= LEDGER_GROWTH_PERCENT)}", load_cell(retention)),
        ("  ids kept for deduplication after their events were pruned (event_ids)",
         f"{slices[-1]['event_ids']:,} ids at the end, +{retention['event_ids_per_day']:,.0f}"
         " a day", "—", "—", "—", load_cell(retention)),
    ]


def _pruning_rows(pruning: dict[str, Any]) -> list[tuple[str, ...]]:
    drop, scrape_max = pruning["drop_percent"], pruning["scrape_max_ms"]
    filled = pruning["filled"]
    throughout = "" if pruning["pruning_throughout"] else \
        " (pruning did NOT cover every round: see pruned_at_go/end in the JSON)"
    return [
        (f"max HTTP ingest while the exporter prunes a day of {filled['events']:,} old events "
         f"(median of {len(pruning['with'])}){throughout}",
         f"{pruning['events_per_second']:,.0f} events/s",
         f"not pruning {pruning['without_events_per_second']:,.0f} events/s",
         f"{drop:.1f}% drop",
         f"drop ≤ {INGEST_DROP_PERCENT:.0f}% {verdict(drop <= INGEST_DROP_PERCENT)}",
         load_cell(pruning)),
        (f"  GET /metrics every {pruning['scrape_interval']:g} s during those rounds "
         f"({pruning['scrapes']} scrapes): p50 / max",
         f"{pruning['scrape_p50_ms']:.1f} / {scrape_max:.1f} ms",
         f"not pruning: max {pruning['without_scrape_max_ms']:.1f} ms",
         f"{scrape_max / pruning['without_scrape_max_ms']:.2f}x max",
         f"max ≤ {SCRAPE_MAX_MS:.0f} ms {verdict(scrape_max <= SCRAPE_MAX_MS)}",
         load_cell(pruning)),
        *_paced_rows(pruning),
    ]


def _paced_rows(pruning: dict[str, Any]) -> list[tuple[str, ...]]:
    paced = pruning.get("paced")
    if paced is None:
        return []
    with_, without = paced["with"], paced["without"]
    scrape_max = with_["scrape_max_ms"]
    throughout = "" if with_["pruning_throughout"] else ", pruning NOT throughout"
    return [(f"  GET /metrics every {pruning['scrape_interval']:g} s, ingest paced at half "
             f"({paced['rate']:,.0f}/s held {with_['ingest']['events_per_second']:,.0f}) for "
             f"{paced['seconds']:.0f} s while pruning{throughout} ({with_['scrapes']} scrapes): "
             "p50 / max",
             f"{with_['scrape_p50_ms']:.1f} / {scrape_max:.1f} ms",
             f"not pruning: p50 {without['scrape_p50_ms']:.1f}, max "
             f"{without['scrape_max_ms']:.1f} ms",
             f"{scrape_max / without['scrape_max_ms']:.2f}x max",
             f"max ≤ {SCRAPE_MAX_MS:.0f} ms {verdict(scrape_max <= SCRAPE_MAX_MS)}",
             "—")]


def rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(measurement, result, baseline, ratio, target, load) for each number of the run."""
    return [*_history_rows(results["history"]), *_retention_rows(results["retention"]),
            *_pruning_rows(results["pruning"])]


def _series(results: dict[str, Any], *, markdown: bool) -> str:
    """RSS and ledger size at every sample of the history."""
    header = ("events", "RSS total", "server", "parse workers", "peak (VmHWM)", "ledger")
    body: list[tuple[str, ...]] = [(f"{sample['events']:,}", _mib(sample["rss_bytes"]),
             _mib(sample["server_rss_bytes"]), _mib(sample["workers_rss_bytes"]),
             _mib(sample["hwm_bytes"]), _mib(sample["ledger_bytes"]))
            for sample in [results["history"]["idle"], *results["history"]["samples"]]]
    return grid(["Memory and ledger along the history:"], header, body, markdown=markdown)


def _debug(results: dict[str, Any], *, markdown: bool) -> str:
    debug = results["memory_debug"]
    samples = debug["samples"]
    names = list(samples[0]["sets"])
    header = ("set (in-process history)", *(f"{sample['events']:,}" for sample in samples))
    body = [(name, *(f"{sample['sets'][name]:,}" for sample in samples)) for name in names]
    caches = sorted({name for sample in samples for name in sample["sqlite_cache_bytes"]})
    body.extend((f"SQLite page cache, {name} connection",
                 *(_mib(sample["sqlite_cache_bytes"].get(name, 0)) for sample in samples))
                for name in caches)
    body.append(("traced Python memory",
                 *(_mib(sample["traced_bytes"]) for sample in samples)))
    body.append(("RSS of the process (feeding included)",
                 *(_mib(sample["rss_bytes"]) for sample in samples)))
    growth = grid(["Top allocation growth, first to last sample (tracemalloc):"],
                  ("where", "grown", "now"),
                  [(entry["where"], _mib(entry["grown_bytes"]), _mib(entry["bytes"]))
                   for entry in debug["top_growth"]], markdown=markdown)
    return grid(["Memory debug: what the exporter holds, set by set:"], header, body,
                markdown=markdown) + "\n\n" + growth


def render(results: dict[str, Any], *, markdown: bool) -> str:
    """The targets' table, then the memory series (and the debug sets, when measured)."""
    parts = [grid(title(results, "operations benchmark"), HEADER, rows(results), markdown=markdown),
             _series(results, markdown=markdown)]
    if "memory_debug" in results:
        parts.append(_debug(results, markdown=markdown))
    return "\n\n".join(parts)
