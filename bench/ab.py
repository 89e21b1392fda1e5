"""Interleaved A/B: exporters from several checkouts, loaded in turn, slice by slice.

    python -m bench.ab --slice-events 100000 --slices 10 /tmp/a /tmp/b:EXPORTER_PARSE_WORKERS=2

This machine's speed drifts by a quarter and more within minutes (docs/benchmarks.md), so two
separate runs cannot tell a 5% change. Here every exporter runs at once, each on a fresh ledger
with the same live fleet, idle while another is loaded; the load goes to each in turn (the order
reversed every other slice), and each slice's rate is divided by the first exporter's rate in
the same slice. Two copies of one commit measured a median ratio of 0.98 (0.71 to 1.12 per
slice) over 12 slices of 50,000 events: trust only differences well above 5%.

A checkout is a directory holding the `exporter` package (a `git worktree`, say), optionally
followed by `:NAME=VALUE,...` settings for its exporter.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.phases import Options, _load_run, _seed_fleet
from bench.server import ExporterServer


@dataclass(frozen=True, slots=True)
class Candidate:
    label: str
    tree: Path
    settings: dict[str, str]


def candidate(text: str) -> Candidate:
    tree, _, rest = text.partition(":")
    path = Path(tree).resolve()
    if not (path / "exporter" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{tree} holds no exporter package")
    settings = dict(item.split("=", 1) for item in rest.split(",") if item)
    if any(not name.startswith("EXPORTER_") for name in settings):
        raise argparse.ArgumentTypeError(f"{rest}: settings are EXPORTER_NAME=VALUE")
    return Candidate(text, path, settings)


def _options(arguments: argparse.Namespace) -> Options:
    return Options(events=0, ingest_events=arguments.slice_events, rounds=1,
                   batch_size=arguments.batch_size, connections=arguments.connections,
                   agents=arguments.agents, scrapes=0, callback_events=0, synchronous="FULL",
                   max_seconds=arguments.max_seconds, max_load=0.0, max_wait=0.0, profile=None,
                   profile_seconds=0.0, json=None, markdown=False, workdir=None)


def _start(candidates: Sequence[Candidate], root: Path, agents: int) -> list[ExporterServer]:
    servers: list[ExporterServer] = []
    try:
        for number, each in enumerate(candidates):
            workdir = root / str(number)
            workdir.mkdir()
            server = ExporterServer(workdir, token=secrets.token_hex(16), synchronous="FULL")
            server.environment["PYTHONPATH"] = str(each.tree)
            server.environment.update(each.settings)
            servers.append(server)
            server.start()
            _seed_fleet(server, agents)
    except BaseException:
        _stop(servers)
        raise
    return servers


def _stop(servers: Sequence[ExporterServer]) -> None:
    for server in servers:
        server.stop()


def compare(candidates: Sequence[Candidate], options: Options, slices: int) -> None:
    """Print each slice's events/s and CPU per event, then each candidate's median ratio."""
    rates: list[list[float]] = [[] for _ in candidates]
    cpu: list[list[float]] = [[] for _ in candidates]
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as root:
        servers = _start(candidates, Path(root), options.agents)
        try:
            for number in range(slices):
                order = list(range(len(candidates)))
                for index in order[::-1] if number % 2 else order:
                    result = _load_run(servers[index], options, options.ingest_events)
                    rates[index].append(result["events"] / result["seconds"])
                    cpu[index].append(result["exporter_cpu_us_per_event"])
                print(f"slice {number + 1}: " + " | ".join(
                    f"{rates[index][-1]:,.0f} events/s {cpu[index][-1]:.1f} µs"
                    for index in range(len(candidates))), flush=True)
        finally:
            _stop(servers)
    for index, each in enumerate(candidates):
        ratios = [mine / first for mine, first in zip(rates[index], rates[0], strict=True)]
        print(f"{each.label}: median {statistics.median(rates[index]):,.0f} events/s, "
              f"{statistics.median(cpu[index]):.1f} µs CPU/event; ratio to the first: median "
              f"{statistics.median(ratios):.3f} (from {min(ratios):.3f} to {max(ratios):.3f})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidates", nargs="+", type=candidate,
                        help="checkouts to compare, the first being the reference")
    parser.add_argument("--slice-events", type=int, default=100_000)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    arguments = parser.parse_args(argv)
    if len(arguments.candidates) < 2:
        parser.error("give at least two checkouts")
    compare(arguments.candidates, _options(arguments), arguments.slices)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
