"""The phases of one benchmark run, and `run`, which performs them in order.

1. the in-process callback against a bare prometheus_client counter;
2. the naive raw store, on as many rows as all ingest rounds write;
3. an exporter subprocess with 1,000 live agents; HTTP ingest rounds without and with a scrape
   every second, interleaved so that drift in the machine's load hits both alike;
4. /metrics latency on that exporter, against `generate_latest` on the same samples;
5. optionally py-spy on the exporter during two more ingest rounds (plain and scraped);
6. a fresh exporter fed `events` events: its RSS, then its start-up time on that ledger.

Each phase records the load average before and after it, and the CPU other processes used.
"""

from __future__ import annotations

import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import baselines, profile, workload
from bench.callback import measure_callback
from bench.command import RunOptions
from bench.environment import ForeignLoad, describe, load_average, wait_for_quiet
from bench.loadgen import LoadRun
from bench.scrape import PeriodicScraper, count_samples, percentiles, scrape_latencies
from bench.server import ExporterServer, http_client

SEED_BATCH = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class Options(RunOptions):
    """The sizes and settings of one run (see `python -m bench --help`)."""

    events: int
    ingest_events: int
    rounds: int
    agents: int
    scrapes: int
    callback_events: int
    profile: Path | None
    profile_seconds: float


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average():.2f}] {message}", file=sys.stderr,
          flush=True)


def _phase(name: str, measure: Callable[[], dict[str, Any]], *,
           pids: tuple[int, ...] = ()) -> dict[str, Any]:
    """Run one measurement; record the load average and the others' CPU use around it."""
    _progress(name)
    before, foreign = load_average(), ForeignLoad(pids)
    result = measure()
    result["load"] = [before, load_average()]
    result["foreign_cores"] = foreign.cores()
    return result


def _seed() -> int:
    return secrets.randbits(48)


# -- phases -----------------------------------------------------------------------------------


def _callback_phase(options: Options, directory: Path) -> dict[str, Any]:
    calls = workload.callback_calls(options.callback_events, seed=_seed())
    measured = measure_callback(calls, directory=directory, synchronous=options.synchronous)
    counter = baselines.counter_inc_seconds([name for name, _ in calls])
    return {"events": len(calls), "call_us": measured["call_seconds"] * 1e6,
            "durable_us": measured["durable_seconds"] * 1e6, "counter_inc_us": counter * 1e6,
            "ratio_call": measured["call_seconds"] / counter,
            "ratio_durable": measured["durable_seconds"] / counter}


def _naive_phase(options: Options, directory: Path) -> dict[str, Any]:
    # As many rows as all ingest rounds write: a random-key B-tree slows down as it grows, so
    # the baseline's table must grow as large as the exporter's ledger does.
    total = 2 * options.rounds * options.ingest_events
    rows = [(event["id"], orjson.dumps(event).decode())
            for batch in workload.ingest_batches(total, options.batch_size, seed=_seed())
            for event in batch]
    rate = baselines.naive_store_rate(rows, path=directory / "naive.db",
                                      batch_size=options.batch_size,
                                      synchronous=options.synchronous)
    return {"rows": len(rows), "rows_per_second": rate}


def _seed_fleet(server: ExporterServer, agents: int) -> int:
    """Create `agents` live agents with usage; return the number of events sent."""
    events = workload.live_fleet(agents, seed=_seed())
    with http_client() as client:
        for start in range(0, len(events), SEED_BATCH):
            server.post(client, events[start:start + SEED_BATCH])
    return len(events)


def _load_run(server: ExporterServer, options: Options, events: int, *,
              during: Callable[[], Callable[[], dict[str, Any]]] | None = None) -> dict[str, Any]:
    """One load generator run; `during()` starts a watcher and returns what stops it."""
    run = LoadRun(url=server.url, token=server.token, events=events,
                  batch_size=options.batch_size, connections=options.connections,
                  max_seconds=options.max_seconds, seed=_seed())
    run.ready()
    before = load_average()
    stop = during() if during is not None else None
    cpu, foreign = server.cpu_seconds(), ForeignLoad((server.pid,))
    run.go()
    result = run.result()
    cpu = server.cpu_seconds() - cpu
    result["foreign_cores"] = foreign.cores()
    if stop is not None:
        result.update(stop())
    # CPU per event is far less sensitive to other people's load than events per second.
    result["exporter_cpu_us_per_event"] = cpu / max(1, result["events"]) * 1e6
    result["exporter_cores"] = cpu / result["seconds"]
    result["load"] = [before, load_average()]
    return result


def _scraping(server: ExporterServer) -> Callable[[], Callable[[], dict[str, Any]]]:
    def start() -> Callable[[], dict[str, Any]]:
        scraper = PeriodicScraper(server.url, interval=1.0)
        scraper.start()

        def stop() -> dict[str, Any]:
            durations = scraper.stop()
            return {"scrapes": len(durations), **{
                f"scrape_{key}": value for key, value in percentiles(durations).items()}}
        return stop
    return start


def _ingest_rounds(server: ExporterServer, options: Options) -> tuple[dict[str, Any],
                                                                      dict[str, Any]]:
    plain: list[dict[str, Any]] = []
    scraped: list[dict[str, Any]] = []
    for number in range(options.rounds):
        # Alternate which goes first, so a trend in the ledger's size or the load hits both.
        order = ("plain", "scraped") if number % 2 == 0 else ("scraped", "plain")
        for kind in order:
            _progress(f"ingest round {number + 1}/{options.rounds}, {kind}")
            if kind == "plain":
                plain.append(_load_run(server, options, options.ingest_events))
            else:
                scraped.append(_load_run(server, options, options.ingest_events,
                                         during=_scraping(server)))
    rate = statistics.median(run["events_per_second"] for run in plain)
    scraped_rate = statistics.median(run["events_per_second"] for run in scraped)
    all_scrapes = [run for run in scraped if run["scrapes"]]
    ingest = {"rounds": plain, "events_per_second": rate,
              "exporter_cpu_us_per_event": statistics.median(
                  run["exporter_cpu_us_per_event"] for run in plain),
              "exporter_cores": statistics.median(run["exporter_cores"] for run in plain),
              "foreign_cores": statistics.median(run["foreign_cores"] for run in plain),
              "load": [plain[0]["load"][0], plain[-1]["load"][1]]}
    under_scraping = {
        "rounds": scraped, "events_per_second": scraped_rate,
        "drop_percent": (rate - scraped_rate) / rate * 100,
        "exporter_cpu_us_per_event": statistics.median(
            run["exporter_cpu_us_per_event"] for run in scraped),
        "foreign_cores": statistics.median(run["foreign_cores"] for run in scraped),
        "scrape_p50_ms": statistics.median(run["scrape_p50_ms"] for run in all_scrapes),
        "scrape_max_ms": max(run["scrape_max_ms"] for run in all_scrapes),
        "load": [scraped[0]["load"][0], scraped[-1]["load"][1]]}
    return ingest, under_scraping


def _live_agents(exposition: str) -> int:
    for line in exposition.splitlines():
        if line.startswith("orchestrator_exporter_live_agents "):
            return int(float(line.split()[1]))
    return 0


def _metrics_phase(server: ExporterServer, options: Options) -> dict[str, Any]:
    durations, body = scrape_latencies(server.url, options.scrapes)
    measured = percentiles(durations)
    registry = baselines.mirror_registry(body)
    baseline_durations, baseline_samples = baselines.generate_latest_durations(
        registry, options.scrapes)
    baseline = {"samples": baseline_samples, **percentiles(baseline_durations)}
    return {"scrapes": len(durations), "samples": count_samples(body), "bytes": len(body),
            "live_agents": _live_agents(body), **measured, "baseline": baseline,
            "ratio_p50": measured["p50_ms"] / baseline["p50_ms"],
            "ratio_p95": measured["p95_ms"] / baseline["p95_ms"]}


def _profiled_run(server: ExporterServer, options: Options, events: int, raw: Path, *,
                  scraped: bool) -> dict[str, Any]:
    recordings: list[profile.Recording] = []

    def start() -> Callable[[], dict[str, Any]]:
        stop_scraper = _scraping(server)() if scraped else dict
        recordings.append(profile.Recording(server.pid, options.profile_seconds, raw))
        return stop_scraper

    run = _load_run(server, options, events, during=start)
    summary = profile.summarise(recordings[0].wait())
    raw.with_suffix(".txt").write_text(profile.format_profile(summary) + "\n")
    return {"events_per_second_under_py_spy": run["events_per_second"], "raw": str(raw),
            "summary": [asdict(thread) for thread in summary]}


def _profile_phase(server: ExporterServer, options: Options, directory: Path,
                   rate: float) -> dict[str, Any]:
    """Two more ingest rounds under py-spy, plain and scraped, long enough for the recording."""
    directory.mkdir(parents=True, exist_ok=True)
    events = int(rate * (options.profile_seconds + 3))
    events = max(options.batch_size, events - events % options.batch_size)
    results: dict[str, Any] = {}
    for name, scraped in (("ingest", False), ("ingest-scraped", True)):
        _progress(f"py-spy: {name}")
        results[name] = _profiled_run(server, options, events, directory / f"{name}.raw",
                                      scraped=scraped)
    return results


def _accepted_total(server: ExporterServer) -> float:
    with http_client() as client:
        body = client.get(f"{server.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("orchestrator_exporter_events_accepted_total"))


def _memory_phase(options: Options, directory: Path) -> dict[str, Any]:
    server = ExporterServer(directory, token=secrets.token_urlsafe(16),
                            synchronous=options.synchronous)
    try:
        empty = server.start()
        seeded = _seed_fleet(server, options.agents)
        run = _load_run(server, options, max(options.batch_size, options.events - seeded))
        memory = server.memory()
        accepted = _accepted_total(server)
        stop_seconds = server.stop()
        startup = server.start()
        restarted = server.memory()
        after_restart = _accepted_total(server)
    finally:
        server.stop()
    if after_restart != accepted:  # a benchmark of a wrong answer is worthless
        raise RuntimeError(f"{accepted} events accepted before the restart, {after_restart} after")
    return {"events": seeded + run["events"], "events_per_second": run["events_per_second"],
            "exporter_cpu_us_per_event": run["exporter_cpu_us_per_event"],
            "rss_bytes": memory["VmRSS"], "hwm_bytes": memory["VmHWM"],
            "ledger_bytes": server.ledger_bytes(), "stop_seconds": stop_seconds,
            "startup_empty_seconds": empty, "startup_seconds": startup,
            "rss_after_restart_bytes": restarted["VmRSS"],
            "accepted_after_restart": after_restart}


def run(options: Options, directory: Path) -> dict[str, Any]:
    """Every phase; the results as one JSON-ready dictionary."""
    before = wait_for_quiet(options.max_load, options.max_wait)
    environment = describe()  # after the wait: its date is when measuring began
    results: dict[str, Any] = {"environment": environment.as_dict(),
                               "options": {key: str(value) if isinstance(value, Path) else value
                                           for key, value in asdict(options).items()}}
    results["callback"] = _phase("in-process callback", lambda: _callback_phase(
        options, directory))
    results["naive_store"] = _phase("naive sqlite3 store", lambda: _naive_phase(
        options, directory))
    (directory / "ingest").mkdir()
    server = ExporterServer(directory / "ingest", token=secrets.token_urlsafe(16),
                            synchronous=options.synchronous)
    try:
        server.start()
        _progress(f"seeding {options.agents} live agents")
        _seed_fleet(server, options.agents)
        results["ingest"], results["ingest_scraped"] = _ingest_rounds(server, options)
        results["ingest"]["ratio_to_naive"] = (results["ingest"]["events_per_second"]
                                               / results["naive_store"]["rows_per_second"])
        results["metrics"] = _phase("/metrics latency", lambda: _metrics_phase(server, options),
                                    pids=(server.pid,))
        if options.profile is not None:
            profile_directory = options.profile
            results["profile"] = _phase("py-spy during ingest", lambda: _profile_phase(
                server, options, profile_directory, results["ingest"]["events_per_second"]),
                pids=(server.pid,))
    finally:
        server.stop()
    (directory / "memory").mkdir()
    results["memory"] = _phase(f"memory and start-up after {options.events:,} events",
                               lambda: _memory_phase(options, directory / "memory"))
    results["load"] = {"before": before, "after": load_average()}
    return results
