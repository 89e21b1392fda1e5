"""`python -m bench.operations`: what running for months costs. Memory against history, the
ledger's size with retention at a simulated clock, and ingest and scrapes while pruning.

The phases are in `bench.operation_phases`, the table in `bench.operations_report`; this module
reads the options and prints the results. Not part of `make test` (tests/test_bench_smoke.py
runs it at tiny sizes); docs/benchmarks.md has the results and what each number means.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial

from bench import workload
from bench.command import add_run_options, parse, run_fields, run_in, write_json
from bench.operation_phases import Options, run
from bench.operations_report import render


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.operations", description=(
        "Benchmark a long-running exporter: resident memory as history grows, the ledger's "
        "size per simulated day with a short retention, and ingest and scrape latency while a "
        "day of old events is pruned. Prints a table; --json writes every number."))
    size = parser.add_argument_group("sizes")
    size.add_argument("--quick", action="store_true", help="small sizes, no waiting for a "
                      "quiet machine")
    size.add_argument("--history-events", type=int, help="events fed over HTTP while memory is "
                      "sampled (default 10,000,000; quick 200,000)")
    size.add_argument("--history-samples", type=int, default=10, help="memory samples, one "
                      "after each equal share of those events (default 10)")
    size.add_argument("--retention-days", type=int, default=1, help="retention of the "
                      "simulated days and of the pruning rounds (default 1)")
    size.add_argument("--retention-slices", type=int, help="simulated days fed, a retention "
                      "pass after each (default 8; quick 5)")
    size.add_argument("--slice-events", type=int, help="events per simulated day (default "
                      "200,000; quick 10,000)")
    size.add_argument("--prune-events", type=int, help="old events in the ledger the pruning "
                      "rounds start from (default 1,000,000; quick 20,000)")
    size.add_argument("--prune-ingest-events", type=int, help="events per pruning round "
                      "(default 200,000; quick 10,000)")
    size.add_argument("--prune-rounds", type=int, help="rounds, each with and without "
                      "pruning (default 3; quick 1)")
    size.add_argument("--scrape-interval", type=float, default=0.25,
                      help="seconds between scrapes of /metrics in the pruning rounds")
    size.add_argument("--batch-size", type=int, default=500,
                      help=f"events per request, a multiple of {workload.EPISODE_EVENTS}")
    size.add_argument("--connections", type=int, default=8)
    run_group = parser.add_argument_group("run")
    add_run_options(run_group)
    run_group.add_argument("--memory-debug", action="store_true", help="first feed the same "
                           "history to an exporter in this process and report the size of "
                           "every set it holds and tracemalloc's top growth (slow: about "
                           "10,000 events/s)")
    return parser


def _options(argv: Sequence[str] | None) -> Options:
    parser = _parser()
    arguments, pick = parse(parser, argv)
    if arguments.history_samples < 2:
        parser.error("--history-samples must be at least 2")
    return Options(
        history_events=pick(arguments.history_events, 10_000_000, 200_000),
        history_samples=arguments.history_samples, retention_days=arguments.retention_days,
        retention_slices=pick(arguments.retention_slices, 8, 5),
        slice_events=pick(arguments.slice_events, 200_000, 10_000),
        prune_events=pick(arguments.prune_events, 1_000_000, 20_000),
        prune_ingest_events=pick(arguments.prune_ingest_events, 200_000, 10_000),
        prune_rounds=pick(arguments.prune_rounds, 3, 1),
        scrape_interval=arguments.scrape_interval, memory_debug=arguments.memory_debug,
        **run_fields(arguments, pick))


def main(argv: Sequence[str] | None = None) -> int:
    options = _options(argv)
    results = run_in(options.workdir, "orchestrator-bench-ops-", partial(run, options))
    print(render(results, markdown=options.markdown))
    write_json(options.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
