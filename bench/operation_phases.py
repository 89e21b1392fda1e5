"""The phases of `python -m bench.operations`, and `run`, which performs them in order.

1. history: a real exporter subprocess fed `history_events` events of the workload over HTTP,
   its resident memory (server and parse workers) sampled after every `history_events /
   history_samples` events; the ledger's bytes per event at the end;
2. retention: an exporter in this process fed one simulated day per slice (bench.feeder), its
   retention pass run at the simulated clock after each slice; the ledger's size per slice;
3. pruning: a ledger holding a day of `prune_events` events older than the retention; ingest
   rounds at full speed on copies of it, with the exporter's own retention thread pruning and
   without, interleaved; /metrics scraped every `scrape_interval` seconds throughout. Then one
   round each way with ingest paced at half the full speed measured without pruning, scraped
   the same way: at full speed the event loop that answers a scrape is saturated by ingest, so
   a scrape's time there is mostly its wait in line, whatever pruning does.

With `memory_debug`, first the same history fed to an exporter in this process, the size of
every set it holds and tracemalloc's top growth per sample (bench.live_sets).
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import sqlite3
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.command import RunOptions
from bench.environment import ForeignLoad, describe, load_average, wait_for_quiet
from bench.feeder import FedExporter, ledger_files
from bench.live_sets import live_sets, sqlite_caches, top_growth
from bench.loadgen import LoadRun
from bench.pacer import PacedIngest
from bench.phases import _phase, _progress, _seed
from bench.scrape import PeriodicScraper, percentiles
from bench.server import ExporterServer, http_client
from bench.workload import EPISODE_EVENTS
from exporter.budgets import SECONDS_PER_DAY
from exporter.retention import Pruner, RetentionThread

# Episodes of a simulated day fill 99% of it: the last one's events end within the day.
DAY_FILL = 0.99
# The exporter's retention pass in the pruning rounds: every second, so it starts while the
# load generator builds its bodies and runs again as soon as a pass ends.
PRUNE_INTERVAL_SECONDS = 1.0
PRUNE_START_SECONDS = 30.0  # after the first pass is due, the longest it may take to begin
PACED_MIN_SECONDS = 2.0  # the paced rounds' least length (a tiny run's full-speed round is less)


@dataclass(frozen=True, slots=True, kw_only=True)
class Options(RunOptions):
    """The sizes and settings of one run (see `python -m bench.operations --help`)."""

    history_events: int
    history_samples: int
    retention_days: int
    retention_slices: int
    slice_events: int
    prune_events: int
    prune_ingest_events: int
    prune_rounds: int
    scrape_interval: float
    memory_debug: bool


def _round_to_batches(events: int, batch_size: int) -> int:
    return max(batch_size, events - events % batch_size)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _memory_sample(server: ExporterServer, events: int) -> dict[str, Any]:
    """After a scrape (its label texts are cached like any scraped exporter's): the RSS of the
    server and its workers, the ledger's size."""
    with http_client() as client:
        client.get(f"{server.url}/metrics").raise_for_status()
    total = server.memory()
    server_rss = _rss(server.pid)
    return {"events": events, "rss_bytes": total["VmRSS"], "hwm_bytes": total["VmHWM"],
            "server_rss_bytes": server_rss, "workers_rss_bytes": total["VmRSS"] - server_rss,
            "ledger_bytes": server.ledger_bytes(), "at": time.time()}


# -- 1. RSS against history -------------------------------------------------------------------


def _load_run(server: ExporterServer, options: Options, events: int) -> LoadRun:
    return LoadRun(url=server.url, token=server.token, events=events,
                   batch_size=options.batch_size, connections=options.connections,
                   max_seconds=options.max_seconds, seed=_seed())


def _history_phase(options: Options, directory: Path) -> dict[str, Any]:
    """Slices of the workload over HTTP, the next slice's bodies built while one is sent."""
    step = _round_to_batches(options.history_events // options.history_samples,
                             options.batch_size)
    server = ExporterServer(directory, token=secrets.token_urlsafe(16),
                            synchronous=options.synchronous)
    samples: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    try:
        server.start()
        idle = _memory_sample(server, 0)
        upcoming = _load_run(server, options, step)
        upcoming.ready()
        events = 0
        started, cpu = time.perf_counter(), server.cpu_seconds()
        for number in range(options.history_samples):
            run = upcoming
            run.go()
            if number + 1 < options.history_samples:
                upcoming = _load_run(server, options, step)
            result = run.result()
            if not result["completed"]:
                raise RuntimeError(f"a slice stopped after {result['events']} of {step} events")
            events += result["events"]
            runs.append(result)
            samples.append(_memory_sample(server, events))
            _progress(f"history: {events:,} events, RSS "
                      f"{samples[-1]['rss_bytes'] / 2**20:.0f} MiB")
            if number + 1 < options.history_samples:
                upcoming.ready()
        seconds, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
    finally:
        server.stop()
    first, last = samples[0], samples[-1]
    return {"idle": idle, "samples": samples, "step": step, "events": events,
            "growth_percent": (last["rss_bytes"] - first["rss_bytes"]) / first["rss_bytes"] * 100,
            "ledger_bytes_per_event": last["ledger_bytes"] / events,
            "events_per_second": statistics.median(run["events_per_second"] for run in runs),
            "exporter_cpu_us_per_event": cpu / events * 1e6, "seconds": seconds}


def _memory_debug_phase(options: Options, directory: Path) -> dict[str, Any]:
    """The same history in this process: every set's size and the top allocation growth."""
    step = _round_to_batches(options.history_events // options.history_samples,
                             options.batch_size)
    tracemalloc.start()
    fed = FedExporter(directory / "ledger.db", synchronous=options.synchronous)
    samples: list[dict[str, Any]] = []
    try:
        first: tracemalloc.Snapshot | None = None
        growth: list[dict[str, Any]] = []
        now = time.time()
        origin = now - options.history_samples * 3600.0 - 3600.0
        for number in range(options.history_samples):
            start = origin + number * 3600.0  # an hour of history per sample, in the past
            fed.feed(step, options.batch_size, start=start,
                     spacing=3600.0 * DAY_FILL / (step / EPISODE_EVENTS))
            with fed.exporter.lock:
                sizes = live_sets(fed.exporter)
            snapshot = tracemalloc.take_snapshot()
            if first is None:
                first = snapshot
            else:
                growth = top_growth(first, snapshot)
            samples.append({"events": (number + 1) * step, "sets": sizes,
                            "sqlite_cache_bytes": sqlite_caches(fed.exporter),
                            "traced_bytes": tracemalloc.get_traced_memory()[0],
                            "rss_bytes": _rss(os.getpid())})
            _progress(f"memory debug: {(number + 1) * step:,} events")
    finally:
        fed.close()
        tracemalloc.stop()
    return {"samples": samples, "top_growth": growth}


# -- 2. ledger size with retention at a simulated clock -----------------------------------------


def _ledger_size(database: Path) -> dict[str, int]:
    """The files' bytes, and what the pages in use hold (the rest is free pages to reuse)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        page_size, pages, free = (connection.execute(f"PRAGMA {name}").fetchone()[0]
                                  for name in ("page_size", "page_count", "freelist_count"))
        rows = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        ids = connection.execute("SELECT count(*) FROM event_ids").fetchone()[0]
    finally:
        connection.close()
    wal = database.with_name(database.name + "-wal")
    return {"file_bytes": sum(path.stat().st_size for path in ledger_files(database)),
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "used_bytes": (pages - free) * page_size, "events": rows, "event_ids": ids}


def _retention_phase(options: Options, directory: Path) -> dict[str, Any]:
    day = SECONDS_PER_DAY
    episodes = options.slice_events / EPISODE_EVENTS
    # Whole simulated days, ending in the past: every timestamp stays within the contract.
    origin = (math.floor(time.time() / day) - options.retention_slices - 1) * day
    now = [origin]
    database = directory / "ledger.db"
    fed = FedExporter(database, synchronous=options.synchronous)
    # Nothing else runs while a simulated day is pruned: no rest between chunks (this phase
    # measures the ledger's size, the pruning phase below its cost to ingest).
    retention = RetentionThread(Pruner(fed.exporter.ledger.engine, rest=0),
                                days=options.retention_days, archive_days=365,
                                interval=day, clock=lambda: now[0])
    slices: list[dict[str, Any]] = []
    try:
        for number in range(options.retention_slices):
            start = origin + number * day
            started = time.perf_counter()
            accepted = fed.feed(options.slice_events, options.batch_size, start=start,
                                spacing=day * DAY_FILL / episodes)
            fed_seconds = time.perf_counter() - started
            before = _ledger_size(database)
            now[0] = start + day  # the end of the slice's simulated day
            started = time.perf_counter()
            pruned = retention.prune_once()
            slices.append({"day": number + 1, "accepted": accepted, "feed_seconds": fed_seconds,
                           "before_prune": before, "pruned": pruned.as_dict(),
                           "prune_seconds": time.perf_counter() - started,
                           **_ledger_size(database)})
            _progress(f"retention: day {number + 1}, ledger "
                      f"{slices[-1]['file_bytes'] / 2**20:.0f} MiB")
    finally:
        fed.close()
    sizes = [entry["file_bytes"] for entry in slices]
    middle = sizes[len(sizes) // 2]
    return {"slices": slices, "retention_days": options.retention_days,
            "slice_events": options.slice_events,
            "growth_last_half_percent": (sizes[-1] - middle) / middle * 100,
            "event_ids_per_day": (slices[-1]["event_ids"] - slices[len(slices) // 2]["event_ids"])
            / max(1, len(slices) - 1 - len(slices) // 2)}


# -- 3. pruning while ingest runs --------------------------------------------------------------


def _fill_old_day(options: Options, directory: Path) -> dict[str, Any]:
    """A ledger of `prune_events` events received over a day that ended a day and a half ago."""
    directory.mkdir()
    episodes = options.prune_events / EPISODE_EVENTS
    start = time.time() - (options.retention_days + 1.5) * SECONDS_PER_DAY
    fed = FedExporter(directory / "ledger.db", synchronous=options.synchronous)
    started = time.perf_counter()
    try:
        accepted = fed.feed(options.prune_events, options.batch_size, start=start,
                            spacing=SECONDS_PER_DAY * DAY_FILL / episodes)
    finally:
        fed.close()
    return {"events": accepted, "seconds": time.perf_counter() - started,
            **_ledger_size(directory / "ledger.db")}


def _oldest_seq(database: Path) -> int:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return int(connection.execute("SELECT min(seq) FROM events").fetchone()[0] or 0)
    finally:
        connection.close()


def _await_pruning(database: Path) -> None:
    """Until the exporter's retention thread has removed its first chunk (its first pass comes
    `PRUNE_INTERVAL_SECONDS` after the start): a round must measure ingest while it prunes,
    and a short one could otherwise end before the first pass began."""
    deadline = time.monotonic() + PRUNE_INTERVAL_SECONDS + PRUNE_START_SECONDS
    while _oldest_seq(database) <= 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the exporter had pruned nothing {PRUNE_START_SECONDS:g} s "
                               "after its first pass was due")
        time.sleep(0.02)


def _round_server(options: Options, filled: Path, workdir: Path, *,
                  pruning: bool) -> ExporterServer:
    """An exporter (not started) on a fresh copy of the filled ledger, its retention thread
    pruning from a second after start, or off."""
    workdir.mkdir()
    for path in ledger_files(filled / "ledger.db"):
        shutil.copy2(path, workdir / path.name)
    server = ExporterServer(workdir, token=secrets.token_urlsafe(16),
                            synchronous=options.synchronous)
    server.environment["EXPORTER_RETENTION_DAYS"] = str(options.retention_days if pruning else 0)
    server.environment["EXPORTER_RETENTION_INTERVAL_SECONDS"] = str(PRUNE_INTERVAL_SECONDS)
    return server


def _pruning_round(options: Options, filled: Path, workdir: Path, *,
                   pruning: bool) -> dict[str, Any]:
    """One ingest run at full speed on a fresh copy of the filled ledger."""
    server = _round_server(options, filled, workdir, pruning=pruning)
    try:
        server.start()
        run = _load_run(server, options, options.prune_ingest_events)
        run.ready()
        if pruning:
            _await_pruning(server.database)
        oldest_at_go = _oldest_seq(server.database)
        scraper = PeriodicScraper(server.url, interval=options.scrape_interval)
        before, foreign = load_average(), ForeignLoad((server.pid,))
        cpu = server.cpu_seconds()
        scraper.start()
        run.go()
        result = run.result()
        durations = scraper.stop()
        cpu = server.cpu_seconds() - cpu
        oldest_at_end = _oldest_seq(server.database)
        result["foreign_cores"] = foreign.cores()
        result["load"] = [before, load_average()]
    finally:
        server.stop()
        shutil.rmtree(workdir)
    if not result["completed"]:
        raise RuntimeError(f"the load generator stopped after {result['events']} events")
    old = options.prune_events
    return {**result, "exporter_cpu_us_per_event": cpu / result["events"] * 1e6,
            "scrapes": len(durations),
            **{f"scrape_{key}": value for key, value in percentiles(durations).items()},
            # Pruning goes in seq order: the oldest seq left says how far it had come.
            "pruned_at_go": min(old, oldest_at_go - 1),
            "pruned_at_end": min(old, oldest_at_end - 1),
            "pruning_throughout": 1 < oldest_at_go <= oldest_at_end <= old if pruning else False}


def _paced_pruning_round(options: Options, filled: Path, workdir: Path, *, pruning: bool,
                         rate: float, seconds: float) -> dict[str, Any]:
    """`seconds` of ingest paced at `rate` on a fresh copy of the filled ledger, scraped."""
    server = _round_server(options, filled, workdir, pruning=pruning)
    pacer: PacedIngest | None = None
    try:
        server.start()
        pacer = PacedIngest(url=server.url, token=server.token, rate=rate,
                            batch_size=options.batch_size, connections=options.connections,
                            seed=_seed())
        pacer.build(seconds + 5)
        if pruning:
            _await_pruning(server.database)
        oldest_at_go = _oldest_seq(server.database)
        scraper = PeriodicScraper(server.url, interval=options.scrape_interval)
        scraper.start()
        pacer.go()
        time.sleep(seconds)
        segment = pacer.stop()
        durations = scraper.stop()
        oldest_at_end = _oldest_seq(server.database)
    finally:
        if pacer is not None:
            pacer.close()
        server.stop()
        shutil.rmtree(workdir)
    old = options.prune_events
    return {"ingest": segment, "scrapes": len(durations),
            **{f"scrape_{key}": value for key, value in percentiles(durations).items()},
            "pruned_at_go": min(old, oldest_at_go - 1),
            "pruned_at_end": min(old, oldest_at_end - 1),
            "pruning_throughout": 1 < oldest_at_go <= oldest_at_end <= old if pruning else False}


def _paced_pruning(options: Options, directory: Path, rate: float,
                   seconds: float) -> dict[str, Any]:
    paced = {}
    for pruning in (False, True):
        _progress(f"pruning, paced ingest at {rate:,.0f}/s, {'' if pruning else 'not '}pruning")
        paced["with" if pruning else "without"] = _paced_pruning_round(
            options, directory / "filled", directory / f"paced-{pruning}", pruning=pruning,
            rate=rate, seconds=seconds)
    return {"rate": rate, "seconds": seconds, **paced}


def _pruning_phase(options: Options, directory: Path) -> dict[str, Any]:
    _progress(f"pruning: filling a day of {options.prune_events:,} old events")
    filled = _fill_old_day(options, directory / "filled")
    rounds: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    for number in range(options.prune_rounds):
        order = (False, True) if number % 2 == 0 else (True, False)
        for pruning in order:
            _progress(f"pruning round {number + 1}/{options.prune_rounds}, "
                      f"{'pruning' if pruning else 'not pruning'}")
            rounds[pruning].append(_pruning_round(
                options, directory / "filled", directory / f"round-{number}-{pruning}",
                pruning=pruning))
    with_rate = statistics.median(run["events_per_second"] for run in rounds[True])
    without_rate = statistics.median(run["events_per_second"] for run in rounds[False])
    # As long as a full-speed round took, pruning included: at half speed, half of it pruned.
    seconds = max(PACED_MIN_SECONDS, statistics.median(run["seconds"] for run in rounds[True]))
    paced = _paced_pruning(options, directory, without_rate / 2, seconds)
    return {"filled": filled, "with": rounds[True], "without": rounds[False], "paced": paced,
            "scrape_interval": options.scrape_interval,
            "events_per_second": with_rate, "without_events_per_second": without_rate,
            "drop_percent": (without_rate - with_rate) / without_rate * 100,
            "scrape_max_ms": max(run["scrape_max_ms"] for run in rounds[True]),
            "scrape_p50_ms": statistics.median(run["scrape_p50_ms"] for run in rounds[True]),
            "without_scrape_max_ms": max(run["scrape_max_ms"] for run in rounds[False]),
            "scrapes": sum(run["scrapes"] for run in rounds[True]),
            "pruning_throughout": all(run["pruning_throughout"] for run in rounds[True]),
            "round_foreign_cores": max(run["foreign_cores"]
                                       for run in rounds[True] + rounds[False])}


def run(options: Options, directory: Path) -> dict[str, Any]:
    """Every phase; the results as one JSON-ready dictionary."""
    before = wait_for_quiet(options.max_load, options.max_wait)
    results: dict[str, Any] = {"environment": describe().as_dict(),
                               "options": {key: str(value) if isinstance(value, Path) else value
                                           for key, value in asdict(options).items()}}
    phases: list[tuple[str, str, Callable[[Options, Path], dict[str, Any]]]] = [
        ("history", f"RSS over {options.history_events:,} events", _history_phase),
        ("retention", f"ledger size over {options.retention_slices} simulated days",
         _retention_phase),
        ("pruning", "ingest and scrapes while pruning", _pruning_phase)]
    if options.memory_debug:
        phases.insert(0, ("memory_debug", "memory debug, in process", _memory_debug_phase))
    for key, title, measure in phases:
        (directory / key).mkdir()
        results[key] = _phase(title, lambda measure=measure, key=key: measure(  # type: ignore[misc]
            options, directory / key))
    results["load"] = {"before": before, "after": load_average()}
    return results
