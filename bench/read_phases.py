"""The phases of `python -m bench.reads`, and `run`, which performs them in order.

1. fill: the load generator feeds a fresh exporter `events` events as fast as it is answered;
   that rate is the maximum, and the pacer (bench/pacer.py) holds half of it from then on. The
   filled ledger is copied aside, and every measurement below starts on it: after any ingest
   the copy is restored and the exporter restarted, so that no phase reads a ledger that the
   phases before it grew;
2. reads: the read API's requests (bench/read_latency.py), in blocks that alternate between
   paced ingest running and none (the baseline), so that drift hits both;
3. export: the whole ledger as NDJSON without ingest (the baseline) and under paced ingest,
   with the exporter's memory sampled meanwhile (bench/export.py); and Python's sqlite3
   reading the same rows;
4. stream delivery: one subscriber (the baseline), then `subscribers`, while the pacer posts;
5. optionally py-spy on the exporter in two more paced segments: reads, and the subscribers;
6. ingest with subscribers: load generator rounds with the subscribers connected and reading,
   alternating with rounds without any.

Each measured span records the load average before and after it and the CPU that other
processes used meanwhile; a phase shows the first and last load and the most others used.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from bench import profile
from bench.burner import Burner
from bench.command import RunOptions
from bench.delivery import delivery
from bench.environment import ForeignLoad, describe, load_average, wait_for_quiet
from bench.export import export_everything, sqlite_read
from bench.loadgen import LoadRun
from bench.pacer import PacedIngest
from bench.read_latency import Endpoint, Fleet, endpoints, explore, time_requests
from bench.scrape import percentiles
from bench.server import ExporterServer, free_port, http_client
from bench.subscribers import Subscribers

# The exporter's own default cap on subscribers: the number the issue asks about.
DEFAULT_MAX_SUBSCRIBERS = 100
DRAIN_POLL_SECONDS = 0.25
DRAIN_MAX_SECONDS = 30.0
# Paced bodies are built for this many times the seconds a span takes without ingest, plus a
# margin: under ingest it takes several times longer, and the bodies must not run out (a block
# of reads ends early, with fewer requests, rather than go on without ingest).
SUPPLY_FACTOR = 8
SUPPLY_MARGIN_SECONDS = 5.0

Measured = TypeVar("Measured")


@dataclass(frozen=True, slots=True, kw_only=True)
class Options(RunOptions):
    """The sizes and settings of one run (see `python -m bench.reads --help`)."""

    events: int
    requests: int
    blocks: int
    subscribers: int
    stream_seconds: float
    ratio_events: int
    ratio_rounds: int
    profile: Path | None
    profile_seconds: float


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average():.2f}] {message}", file=sys.stderr,
          flush=True)


@contextlib.contextmanager
def _watched(*pids: int) -> Iterator[dict[str, Any]]:
    """The load average around the block and the cores others used (`pids`: our processes
    still running, beside this one and its ended children)."""
    watch: dict[str, Any] = {}
    before, foreign = load_average(), ForeignLoad(pids)
    yield watch
    watch["load"] = [before, load_average()]
    watch["foreign_cores"] = foreign.cores()


def _worst(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """A phase's load: first and last load average, the most cores others used in any span."""
    return {"load": [spans[0]["load"][0], spans[-1]["load"][1]],
            "foreign_cores": max(span["foreign_cores"] for span in spans)}


def _seed() -> int:
    return secrets.randbits(48)


class _Bench:
    """The exporter under test, the filled ledger every measurement starts from, and the rate
    the pacer holds."""

    def __init__(self, directory: Path, options: Options) -> None:
        self.options = options
        self.server = ExporterServer(directory, token=secrets.token_urlsafe(16),
                                     synchronous=options.synchronous)
        # One token sends every read and opens every subscriber: the per-token limit of read
        # requests (20/s, bursts of 40 by default) would answer most of them 429.
        self.server.environment.update({"EXPORTER_API_RATE_PER_SECOND": "100000",
                                        "EXPORTER_API_BURST": "1000000"})
        if options.subscribers > DEFAULT_MAX_SUBSCRIBERS:
            self.server.environment["EXPORTER_STREAM_MAX_SUBSCRIBERS"] = str(
                options.subscribers)
            # Each subscriber holds a connection; the readers and loaders need theirs too.
            self.server.environment["EXPORTER_MAX_CONNECTIONS"] = str(options.subscribers + 1000)
        self.filled = directory / "filled"
        self.rate = 0.0
        self.running = False
        self.grown = False  # events were ingested since the ledger was last the filled one

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    def start(self) -> None:
        server = self.server
        # A new port each time: the old one may have gone to someone's outgoing connection.
        server.port = free_port()
        server.url = f"http://127.0.0.1:{server.port}"
        server.start()
        self.running = True

    def keep_filled(self) -> None:
        """Stop the exporter (it writes its last checkpoint) and copy the ledger aside."""
        self.server.stop()
        self.running = False
        self.filled.mkdir()
        for path in self.server.workdir.glob("ledger.db*"):
            shutil.copy2(path, self.filled / path.name)

    def fresh(self) -> None:
        """The exporter running on the filled ledger: restarted on a copy of it when events
        were ingested since (reads alone leave the ledger as it was)."""
        if self.grown:
            self.server.stop()
            self.running = self.grown = False
            for path in self.server.workdir.glob("ledger.db*"):
                path.unlink()
            for path in self.filled.iterdir():
                shutil.copy2(path, self.server.workdir / path.name)
        if not self.running:
            self.start()

    @contextlib.contextmanager
    def pacing(self, seconds: float) -> Iterator[PacedIngest]:
        """A pacer at half the maximum rate, with bodies for `seconds` built."""
        pacer = PacedIngest(url=self.server.url, token=self.server.token, rate=self.rate,
                            batch_size=self.options.batch_size,
                            connections=self.options.connections, seed=_seed())
        self.grown = True
        try:
            pacer.build(seconds)
            yield pacer
        finally:
            pacer.close()

    def events_accepted(self) -> int:
        with http_client() as client:
            response = client.get(f"{self.server.url}/api/v1/status", headers=self.headers)
            response.raise_for_status()
            return int(response.json()["events_accepted"])


def _paced(bench: _Bench, seconds: float, measure: Callable[[], Measured], *,
           lead_batches: int = 0) -> tuple[Measured, dict[str, Any]]:
    """`measure()` while paced ingest runs, started once `lead_batches` batches were due (so a
    measurement shorter than a batch interval still overlaps ingest, and the pacer's rate is
    defined); its result, and the pacer's account of the span with the load and the others'
    CPU."""
    with bench.pacing(seconds) as pacer, _watched(bench.server.pid, pacer.pid) as watch:
        pacer.go()
        time.sleep(lead_batches * bench.options.batch_size / pacer.rate)
        try:
            result = measure()
        finally:
            segment = pacer.stop()
    return result, {**segment, **watch}


def _segments(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """The paced ingest over several segments: the rate it held against the one it aimed at."""
    events = sum(segment["events"] for segment in segments)
    seconds = sum(segment["seconds"] for segment in segments)
    return {"segments": segments, "events": events, "seconds": seconds,
            "events_per_second": statistics.median(
                segment["events_per_second"] for segment in segments),
            "rate": segments[0]["rate"],
            "most_late_ms": max(segment["most_late_ms"] for segment in segments),
            "failures": sum(segment["failures"] for segment in segments),
            "first_failure": next((segment["first_failure"] for segment in segments
                                   if segment["first_failure"]), ""),
            "request_p99_ms": max(segment["request_p99_ms"] for segment in segments)}


# -- ingest at its maximum, with or without subscribers -------------------------------------


def _max_ingest(bench: _Bench, events: int, *, subscribers: int = 0,
                burn: float = 0.0) -> dict[str, Any]:
    """One load generator run; `subscribers` connect once its bodies are built (or a process
    spends `burn` of a core instead, bench/burner.py)."""
    server, options = bench.server, bench.options
    run = LoadRun(url=server.url, token=server.token, events=events,
                  batch_size=options.batch_size, connections=options.connections,
                  max_seconds=options.max_seconds, seed=_seed())
    bench.grown = True
    run.ready()
    readers = Subscribers(url=server.url, token=server.token, count=subscribers) \
        if subscribers else None
    burner = Burner(burn) if burn else None
    pids = (server.pid, *(other.pid for other in (readers, burner) if other is not None))
    with _watched(*pids) as watch:
        cpu = server.cpu_seconds()
        run.go()
        result = run.result()
        cpu = server.cpu_seconds() - cpu
    result.update(watch)
    if readers is not None:
        summary = result["subscribers"] = readers.close()
        result["subscriber_cores"] = summary["cpu_seconds"] / summary["seconds"]
    if burner is not None:
        spent = burner.close()
        result["burner_cores"] = spent["cpu_seconds"] / spent["seconds"]
    if not result["completed"]:
        raise RuntimeError(f"the load generator stopped after {result['events']} of {events} "
                           f"events (--max-seconds {options.max_seconds})")
    result["exporter_cpu_us_per_event"] = cpu / max(1, result["events"]) * 1e6
    result["exporter_cores"] = cpu / result["seconds"]
    return result


def _fill_phase(bench: _Bench) -> tuple[dict[str, Any], Fleet]:
    """The maximum ingest rate, filling the ledger; what the lists hold then."""
    bench.start()
    result = _max_ingest(bench, bench.options.events)
    result["events_accepted"] = bench.events_accepted()
    _progress("walking the lists")
    fleet = explore(bench.server.url, bench.headers, seed=_seed())
    bench.keep_filled()
    return result, fleet


def _ratio_phase(bench: _Bench) -> dict[str, Any]:
    options = bench.options
    plain: list[dict[str, Any]] = []
    read: list[dict[str, Any]] = []
    burned: list[dict[str, Any]] = []
    for number in range(options.ratio_rounds):
        # Alternate which goes first, so a trend in the machine's speed hits both. The control
        # (a process spending what the subscribers' process just spent) follows the subscribers.
        order = ("none", "read", "burn") if number % 2 == 0 else ("read", "burn", "none")
        for kind in order:
            _progress(f"max ingest round {number + 1}/{options.ratio_rounds}, "
                      + {"none": "0 subscribers", "burn": "a CPU burner, 0 subscribers",
                         "read": f"{options.subscribers} subscribers"}[kind])
            bench.fresh()
            if kind == "none":
                plain.append(_max_ingest(bench, options.ratio_events))
            elif kind == "read":
                read.append(_max_ingest(bench, options.ratio_events,
                                        subscribers=options.subscribers))
            else:
                burned.append(_max_ingest(bench, options.ratio_events,
                                          burn=read[-1]["subscriber_cores"]))
    rate = statistics.median(run["events_per_second"] for run in plain)
    read_rate = statistics.median(run["events_per_second"] for run in read)
    burn_rate = statistics.median(run["events_per_second"] for run in burned)
    return {
        "without": plain, "with": read, "burned": burned, "events_per_second": rate,
        "with_events_per_second": read_rate, "drop_percent": (rate - read_rate) / rate * 100,
        "burned_events_per_second": burn_rate,
        "burned_drop_percent": (rate - burn_rate) / rate * 100,
        "burner_cores": statistics.median(run["burner_cores"] for run in burned),
        "burned_exporter_cpu_us_per_event": statistics.median(
            run["exporter_cpu_us_per_event"] for run in burned),
        "exporter_cpu_us_per_event": statistics.median(
            run["exporter_cpu_us_per_event"] for run in plain),
        "with_exporter_cpu_us_per_event": statistics.median(
            run["exporter_cpu_us_per_event"] for run in read),
        "subscriber_cores": statistics.median(run["subscriber_cores"] for run in read),
        "cut_offs": sum(run["subscribers"]["cut_offs"] for run in read),
        **_worst(plain + read + burned)}


# -- reads ----------------------------------------------------------------------------------


def _reads_block(bench: _Bench, catalogue: list[Endpoint], rounds: int, *,
                 paced: bool) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One block of `rounds` on a fresh copy of the filled ledger; the seconds per endpoint,
    and the span's account (the pacer's too, when `paced`)."""
    bench.fresh()
    server = bench.server
    started = time.perf_counter()
    time_requests(server.url, bench.headers, catalogue, 1)  # warms the caches after the restart
    one_round = time.perf_counter() - started
    if paced:
        supply = SUPPLY_FACTOR * rounds * one_round
        return _paced(bench, supply + SUPPLY_MARGIN_SECONDS, lambda: time_requests(
            server.url, bench.headers, catalogue, rounds, seconds_at_most=supply))
    with _watched(server.pid) as watch:
        measured = time_requests(server.url, bench.headers, catalogue, rounds)
    return measured, watch


def _reads_phase(bench: _Bench, catalogue: list[Endpoint]) -> dict[str, Any]:
    options = bench.options
    per_block = math.ceil(options.requests / options.blocks)
    seconds: dict[bool, dict[str, list[float]]] = {
        paced: {endpoint.name: [] for endpoint in catalogue} for paced in (False, True)}
    spans: list[dict[str, Any]] = []
    segments: list[dict[str, Any]] = []
    for block in range(options.blocks):
        for paced in (False, True) if block % 2 == 0 else (True, False):
            _progress(f"reads block {block + 1}/{options.blocks}, "
                      f"{'paced ingest' if paced else 'no ingest'}")
            measured, span = _reads_block(bench, catalogue, per_block, paced=paced)
            spans.append(span)
            if paced:
                segments.append(span)
            for name, values in measured.items():
                seconds[paced][name].extend(values)
    return {"endpoints": [{"name": endpoint.name, "is_list": endpoint.is_list,
                           "requests": len(seconds[True][endpoint.name]),
                           "paced": percentiles(seconds[True][endpoint.name]),
                           "plain": percentiles(seconds[False][endpoint.name])}
                          for endpoint in catalogue],
            "ingest": _segments(segments), **_worst(spans)}


# -- export ---------------------------------------------------------------------------------


def _export_phase(bench: _Bench) -> dict[str, Any]:
    server = bench.server
    bench.fresh()
    floor = sqlite_read(server.database)
    with _watched(server.pid) as plain_span:
        plain = export_everything(server, bench.headers)
    bench.fresh()
    # Two batches ahead: at the smoke test's sizes the whole export is shorter than one batch
    # interval, and ended before a second batch was sent (no rate held).
    paced, segment = _paced(bench, SUPPLY_FACTOR * plain["seconds"] + SUPPLY_MARGIN_SECONDS,
                            lambda: export_everything(server, bench.headers), lead_batches=2)
    return {"sqlite3": floor, "plain": plain, "paced": paced, "ingest": _segments([segment]),
            **_worst([plain_span, segment])}


# -- the live stream ------------------------------------------------------------------------


def _drained(subscribers: Subscribers, acks: list[tuple[float, list[str]]],
             path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The subscribers' notes once every one has had every acknowledged event (or
    `DRAIN_MAX_SECONDS` passed: the events missing then are counted as such)."""
    wanted = {event_id for _, ids in acks for event_id in ids}
    deadline = time.monotonic() + DRAIN_MAX_SECONDS
    while True:
        summary, notes = subscribers.report(path)
        seqs = [seq for seq, event_id in notes["pairs"] if event_id in wanted]
        every = len(seqs) == len(wanted) and summary["lowest_seq"] >= max(seqs, default=0)
        if every or time.monotonic() > deadline:
            return summary, notes
        time.sleep(DRAIN_POLL_SECONDS)


def _delivery_phase(bench: _Bench, count: int, directory: Path) -> dict[str, Any]:
    bench.fresh()
    server, seconds = bench.server, bench.options.stream_seconds
    subscribers = Subscribers(url=server.url, token=server.token, count=count)
    try:
        with bench.pacing(seconds + SUPPLY_MARGIN_SECONDS) as pacer:
            subscribers.mark()
            with _watched(server.pid, pacer.pid, subscribers.pid) as watch:
                cpu = server.cpu_seconds()
                pacer.go()
                time.sleep(seconds)
                segment = pacer.stop()
                cpu = server.cpu_seconds() - cpu
            acks = pacer.acks(directory / "acks.json")
        summary, notes = _drained(subscribers, acks, directory / "notes.json")
    finally:
        final = subscribers.close()
    return {**delivery(acks, notes), "ingest": _segments([{**segment, **watch}]),
            "cut_offs": summary["cut_offs"], "reconnects": summary["reconnects"],
            "refused": summary["refused"], "bytes": summary["bytes"],
            "subscriber_cores": final["cpu_seconds"] / final["seconds"],
            "exporter_cores": cpu / segment["seconds"], **watch}


# -- where the exporter's time goes ---------------------------------------------------------


def _profiled(bench: _Bench, raw: Path, during: Callable[[], None]) -> dict[str, Any]:
    """py-spy on the exporter for `profile_seconds` of paced ingest while `during()` runs."""
    seconds = bench.options.profile_seconds
    with bench.pacing(seconds + SUPPLY_MARGIN_SECONDS) as pacer:
        pacer.go()
        try:
            recording = profile.Recording(bench.server.pid, seconds, raw)
            during()
            summary = profile.summarise(recording.wait())
        finally:
            pacer.stop()
    raw.with_suffix(".txt").write_text(profile.format_profile(summary) + "\n")
    return {"raw": str(raw), "summary": [asdict(thread) for thread in summary]}


def _profile_phase(bench: _Bench, catalogue: list[Endpoint], directory: Path) -> dict[str, Any]:
    """Spans of their own, never one that yields a number: py-spy stops the exporter to take
    each sample."""
    directory.mkdir(parents=True, exist_ok=True)
    seconds = bench.options.profile_seconds

    def read() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time_requests(bench.server.url, bench.headers, catalogue, 1)

    bench.fresh()
    with _watched(bench.server.pid) as watch:
        results: dict[str, Any] = {"reads": _profiled(bench, directory / "reads.raw", read)}
        subscribers = Subscribers(url=bench.server.url, token=bench.server.token,
                                  count=bench.options.subscribers)
        try:
            results["stream"] = _profiled(bench, directory / "stream.raw",
                                          lambda: time.sleep(seconds))
        finally:
            subscribers.close()
    return {**results, **watch}


# -- the run --------------------------------------------------------------------------------


def run(options: Options, directory: Path) -> dict[str, Any]:
    """Every phase; the results as one JSON-ready dictionary."""
    before = wait_for_quiet(options.max_load, options.max_wait)
    results: dict[str, Any] = {"environment": describe().as_dict(),
                               "options": {key: str(value) if isinstance(value, Path) else value
                                           for key, value in asdict(options).items()}}
    bench = _Bench(directory, options)
    try:
        _progress(f"fill: {options.events:,} events as fast as answered")
        results["fill"], fleet = _fill_phase(bench)
        bench.rate = results["fill"]["events_per_second"] / 2
        results["fleet"] = fleet.counts()
        catalogue = endpoints(fleet, now=time.time())
        results["reads"] = _reads_phase(bench, catalogue)
        _progress("export")
        results["export"] = _export_phase(bench)
        _progress("stream delivery, 1 subscriber")
        results["delivery_baseline"] = _delivery_phase(bench, 1, directory)
        _progress(f"stream delivery, {options.subscribers} subscribers")
        results["delivery"] = _delivery_phase(bench, options.subscribers, directory)
        if options.profile is not None:
            _progress("py-spy: reads, then the subscribers")
            results["profile"] = _profile_phase(bench, catalogue, options.profile)
        results["ratio"] = _ratio_phase(bench)
    finally:
        bench.server.stop()
    results["load"] = {"before": before, "after": load_average()}
    return results
