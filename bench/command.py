"""What every benchmark command shares: the options of a run, and running in a work directory."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.workload import EPISODE_EVENTS

Pick = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """What every benchmark's options hold besides its sizes: the load generator's batches and
    connections, and what `add_run_options` reads."""

    batch_size: int
    connections: int
    synchronous: str
    max_seconds: float
    max_load: float
    max_wait: float
    json: Path | None
    markdown: bool
    workdir: Path | None


def run_fields(arguments: argparse.Namespace, pick: Pick) -> dict[str, Any]:
    """`RunOptions`' fields from the parsed arguments (`--max-wait`: 300 s, quick 0)."""
    return {"batch_size": arguments.batch_size, "connections": arguments.connections,
            "synchronous": arguments.synchronous, "max_seconds": arguments.max_seconds,
            "max_load": arguments.max_load, "max_wait": pick(arguments.max_wait, 300.0, 0.0),
            "json": arguments.json, "markdown": arguments.markdown,
            "workdir": arguments.workdir}


def add_run_options(group: argparse._ArgumentGroup) -> None:
    """--synchronous, --max-seconds, --max-load, --max-wait, --json, --markdown, --workdir."""
    group.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                       help="SQLite synchronous mode of the exporter (default FULL, the "
                       "exporter's default)")
    group.add_argument("--max-seconds", type=float, default=600.0,
                       help="time bound of each load generator run")
    group.add_argument("--max-load", type=float, default=0.5, help="wait for a one-minute load "
                       "average below this before starting")
    group.add_argument("--max-wait", type=float, help="seconds to wait for that (default 300; "
                       "quick 0)")
    group.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    group.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    group.add_argument("--workdir", type=Path, help="keep ledgers and logs here (default: a "
                       "temporary directory, removed)")


def parse(parser: argparse.ArgumentParser,
          argv: Sequence[str] | None) -> tuple[argparse.Namespace, Pick]:
    """The arguments (`--batch-size` checked), and `pick(value, full, quick)`: the value given,
    else the size of a full or a `--quick` run."""
    arguments = parser.parse_args(argv)
    if arguments.batch_size % EPISODE_EVENTS:
        parser.error(f"--batch-size must be a multiple of {EPISODE_EVENTS}")

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if arguments.quick else full)

    return arguments, pick


def run_in(workdir: Path | None, prefix: str,
           run: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """`run(directory)` in `workdir` (created, kept) or in a temporary directory (removed)."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=False)
        return run(workdir)
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        return run(Path(temporary))


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
