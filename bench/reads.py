"""`python -m bench.reads`: the read API and the live stream on a ledger of a million events
while ingest runs at half its measured maximum, each number beside a baseline of the same run.

The phases are in `bench.read_phases`, the table in `bench.reads_report`; this module reads the
options and prints the results. Not part of `make test` (tests/test_bench_smoke.py runs it at
tiny sizes); docs/benchmarks.md has the results and what each number means.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from bench import workload
from bench.command import add_run_options, parse, run_fields, run_in, write_json
from bench.read_phases import Options, run
from bench.reads_report import render


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.reads", description=(
        "Benchmark the read API, the export and the live stream of a real exporter on a large "
        "ledger while paced ingest runs, each against a baseline measured in the same run. "
        "Prints a table; --json writes every number."))
    size = parser.add_argument_group("sizes")
    size.add_argument("--quick", action="store_true", help="small sizes, no waiting for a "
                      "quiet machine")
    size.add_argument("--events", type=int, help="events in the ledger before reading "
                      "(default 1,000,000; quick 50,000)")
    size.add_argument("--requests", type=int, help="timed requests per endpoint, each with "
                      "and without ingest (default 200; quick 20)")
    size.add_argument("--blocks", type=int, help="alternating blocks those requests are "
                      "split into (default 4; quick 2)")
    size.add_argument("--subscribers", type=int, help="stream subscribers (default 100, the "
                      "exporter's cap; quick 10)")
    size.add_argument("--stream-seconds", type=float, help="paced ingest while the "
                      "subscribers' delivery is timed (default 15; quick 3)")
    size.add_argument("--ratio-events", type=int, help="events per ingest round with and "
                      "without subscribers (default 200,000; quick 20,000)")
    size.add_argument("--ratio-rounds", type=int, default=2, help="rounds of each (default 2)")
    size.add_argument("--batch-size", type=int, default=500,
                      help=f"events per request, a multiple of {workload.EPISODE_EVENTS}")
    size.add_argument("--connections", type=int, default=8, help="concurrent connections of "
                      "the load generator and of the pacer")
    run_group = parser.add_argument_group("run")
    add_run_options(run_group)
    run_group.add_argument("--profile", type=Path, metavar="DIR", help="also run py-spy on "
                           "the exporter during two more paced segments (reads; the "
                           "subscribers): raw stacks and per-thread summaries go here")
    run_group.add_argument("--profile-seconds", type=float, default=5.0)
    return parser


def _options(argv: Sequence[str] | None) -> Options:
    arguments, pick = parse(_parser(), argv)
    return Options(
        events=pick(arguments.events, 1_000_000, 50_000),
        requests=pick(arguments.requests, 200, 20), blocks=pick(arguments.blocks, 4, 2),
        subscribers=pick(arguments.subscribers, 100, 10),
        stream_seconds=pick(arguments.stream_seconds, 15.0, 3.0),
        ratio_events=pick(arguments.ratio_events, 200_000, 20_000),
        ratio_rounds=arguments.ratio_rounds, profile=arguments.profile,
        profile_seconds=arguments.profile_seconds, **run_fields(arguments, pick))


def main(argv: Sequence[str] | None = None) -> int:
    options = _options(argv)
    results = run_in(options.workdir, "orchestrator-bench-reads-", partial(run, options))
    print(render(results, markdown=options.markdown))
    if "profile" in results:
        print(f"\npy-spy profiles: {options.profile}/reads.txt, stream.txt")
    write_json(options.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
