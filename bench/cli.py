"""`python -m bench`: every number of the Speed section in one run, with its baseline beside it.

The phases are in `bench.phases`; this module reads the options and prints the results.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from bench import workload
from bench.command import add_run_options, parse, run_fields, run_in, write_json
from bench.phases import Options, run
from bench.report import markdown, table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "Benchmark the exporter: HTTP ingest, /metrics latency, ingest under scraping, "
        "in-process callback cost, memory and start-up, each against a baseline measured in "
        "the same run. Prints a table; --json writes every number."))
    size = parser.add_argument_group("sizes")
    size.add_argument("--quick", action="store_true", help="small sizes, no waiting for a "
                      "quiet machine: under a minute")
    size.add_argument("--events", type=int, help="events ingested before RSS and start-up are "
                      "measured (default 1,000,000; quick 100,000)")
    size.add_argument("--ingest-events", type=int, help="events per ingest round "
                      "(default 200,000; quick 50,000)")
    size.add_argument("--rounds", type=int, help="ingest rounds, each without and with "
                      "scraping (default 3; quick 1)")
    size.add_argument("--batch-size", type=int, default=500,
                      help=f"events per request, a multiple of {workload.EPISODE_EVENTS}")
    size.add_argument("--connections", type=int, default=8, help="concurrent connections "
                      "(each waits for its answer: a durable answer takes tens of ms)")
    size.add_argument("--agents", type=int, default=1000, help="live agents during ingest "
                      "and scrapes")
    size.add_argument("--scrapes", type=int, help="timed scrapes (default 200; quick 50)")
    size.add_argument("--callback-events", type=int, help="events through the in-process "
                      "callback (default 200,000; quick 20,000)")
    run = parser.add_argument_group("run")
    add_run_options(run)
    run.add_argument("--profile", type=Path, metavar="DIR", help="also run py-spy on the "
                     "exporter during two more ingest rounds (plain, scraped); raw stacks and "
                     "per-thread summaries go here")
    run.add_argument("--profile-seconds", type=float, default=5.0)
    return parser


def _options(argv: Sequence[str] | None) -> Options:
    arguments, pick = parse(_parser(), argv)
    return Options(
        events=pick(arguments.events, 1_000_000, 100_000),
        ingest_events=pick(arguments.ingest_events, 200_000, 50_000),
        rounds=pick(arguments.rounds, 3, 1),
        agents=arguments.agents, scrapes=pick(arguments.scrapes, 200, 50),
        callback_events=pick(arguments.callback_events, 200_000, 20_000),
        profile=arguments.profile, profile_seconds=arguments.profile_seconds,
        **run_fields(arguments, pick))


def main(argv: Sequence[str] | None = None) -> int:
    options = _options(argv)
    results = run_in(options.workdir, "orchestrator-bench-", partial(run, options))
    print(markdown(results) if options.markdown else table(results))
    if "profile" in results:
        print(f"\npy-spy profiles: {options.profile}/ingest.txt, ingest-scraped.txt")
    write_json(options.json, results)
    return 0
