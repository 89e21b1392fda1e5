"""`orchestrator-exporter serve | migrate | demo | token | ctl | tail | top | report |
import-logs | import-transcripts`."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from exporter import __version__, ctl, report, terminal
from exporter.claude_code import importer as transcripts
from exporter.config import ConfigError, FileConfig, load_config, parse_config
from exporter.ledger import make_engine, migrate
from exporter.settings import Settings

# After SIGTERM, requests still open after this long are cancelled (their clients retry).
GRACEFUL_SECONDS: Final = 20
# The name of the ingest token `serve --demo` makes for its simulated Claude Code sessions, and
# how long their wind-down may hold a shutdown.
DEMO_SESSIONS_TOKEN: Final = "demo-claude-code"
SESSIONS_END_SECONDS: Final = 5.0

log = logging.getLogger("exporter")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator-exporter", description=(
        "Prometheus exporter for fleets of Claude agents. Every flag has an EXPORTER_* "
        "environment variable; flags win."))
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the exporter (migrates the ledger first)")
    serve.add_argument("--host", help="listen address (EXPORTER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (EXPORTER_PORT, default 8088)")
    _database_flag(serve)
    serve.add_argument("--config", dest="config_file",
                       help="YAML file with budgets and pricing (EXPORTER_CONFIG_FILE)")
    serve.add_argument("--demo", action="store_true",
                       help="also run a simulated fleet in-process")
    serve.add_argument("--demo-rate", type=float, default=20.0, help="demo events per second")
    serve.add_argument("--demo-seed", type=int, default=42)
    serve.add_argument("--demo-scenario", default=None)
    serve.add_argument("--demo-history", type=float, default=0.0, metavar="DAYS",
                       help="before serving, replay DAYS days of a quieter demo fleet up to now")
    serve.add_argument("--demo-history-openmetrics", type=Path, default=None, metavar="FILE",
                       help="write that history's counters to FILE as OpenMetrics, for "
                       "promtool tsdb create-blocks-from openmetrics")
    migrate_command = commands.add_parser("migrate", help="bring the ledger schema up to date")
    _database_flag(migrate_command)
    demo = commands.add_parser("demo", help="drive a simulated fleet through the HTTP API")
    demo.add_argument("--url", default="http://127.0.0.1:8088")
    demo.add_argument("--token", default=None, help="bearer token (EXPORTER_ADMIN_TOKEN)")
    demo.add_argument("--scenario", default=None)
    demo.add_argument("--rate", type=float, default=20.0, help="events per second")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--duration", type=float, default=None, help="seconds; default: forever")
    token = commands.add_parser("token", help="make a new token: print it once, and the entry "
                                "for EXPORTER_TOKENS_FILE with only its sha256")
    token.add_argument("--name", required=True, help="shown in the audit trail")
    token.add_argument("--role", required=True, choices=("viewer", "operator", "ingest",
                                                          "admin"))
    backup_command = commands.add_parser("backup", help="copy the SQLite ledger, consistent "
                                         "while the exporter serves")
    backup_command.add_argument("file", help="the new backup file")
    _database_flag(backup_command)
    restore_command = commands.add_parser("restore", help="copy a backup into an empty ledger")
    restore_command.add_argument("file", help="a file `backup` wrote")
    _database_flag(restore_command)
    prune = commands.add_parser("prune", help="remove raw events and ended agents, tasks and "
                                "runs from before a date (counters stay); audited")
    prune.add_argument("--before", required=True, help="YYYY-MM-DD (UTC) or RFC 3339")
    prune.add_argument("--archive-dir", default=None, help="first write the pruned events "
                       "there, gzip NDJSON per day (EXPORTER_ARCHIVE_DIR)")
    _database_flag(prune)
    prices = commands.add_parser("prices", help="the models the ledger has seen, their prices, "
                                 "and the unpriced ones")
    _database_flag(prices)
    prices.add_argument("--config", dest="config_file",
                        help="YAML file with pricing overrides (EXPORTER_CONFIG_FILE)")
    prices.add_argument("--all", action="store_true", help="also every model of the table")
    prices.add_argument("--json", action="store_true", help="one JSON object per model")
    ctl.add_parser(commands)
    terminal.add_parsers(commands)
    report.add_parser(commands)
    logs = commands.add_parser("import-logs", help="send the Python orchestrator's AgentLogger "
                               "folders (tools.jsonl, summary.jsonl) as events; again adds nothing")
    logs.add_argument("directory", help="agent_logs, a task's folder or one agent's folder")
    logs.add_argument("--url", default="http://127.0.0.1:8088")
    logs.add_argument("--token", default=None, help="bearer token (EXPORTER_ADMIN_TOKEN)")
    logs.add_argument("--source", default=None, help="the orchestrator instance's name")
    logs.add_argument("--tz", default=None, help="time zone of the logs' timestamps, e.g. "
                      "Europe/Berlin (default: this machine's)")
    logs.add_argument("--follow", action="store_true", help="keep reading new lines and folders")
    logs.add_argument("--interval", type=float, default=1.0, help="seconds between reads")
    transcripts.add_parser(commands)
    return parser


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="sqlite:///FILE or postgresql://... "
                        "(EXPORTER_DATABASE_URL, default sqlite:///orchestrator-exporter.db)")


def _settings(arguments: argparse.Namespace, names: Sequence[str]) -> Settings:
    overrides: dict[str, Any] = {name: getattr(arguments, name) for name in names
                                 if getattr(arguments, name, None) is not None}
    return Settings(**overrides)


def _fail(message: str) -> int:
    print(f"orchestrator-exporter: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "serve":
            settings = _settings(arguments, ("host", "port", "database_url", "config_file"))
            logging.basicConfig(level=settings.log_level.upper(),
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            return _serve(settings, arguments)
        if arguments.command == "import-logs":
            return _import_logs(arguments)
        if arguments.command == "import-transcripts":
            return transcripts.run(arguments)
        if arguments.command == "ctl":
            return ctl.run(arguments)
        if arguments.command in ("tail", "top"):
            return terminal.run(arguments)
        if arguments.command == "report":
            return report.run(arguments)
        if arguments.command in ("backup", "restore"):
            return _backup_or_restore(arguments, _settings(arguments, ("database_url",)))
        if arguments.command == "prune":
            return _prune(arguments, _settings(arguments, ("database_url", "archive_dir")))
        if arguments.command == "prices":
            return _prices(_settings(arguments, ("database_url", "config_file")), arguments)
        if arguments.command == "token":
            return _new_token(arguments.name, arguments.role)
        if arguments.command == "migrate":
            settings = _settings(arguments, ("database_url",))
            migrate(make_engine(settings.database_url))
            print(f"ledger at {settings.database_url.split('@')[-1]} is up to date")
            return 0
        return _demo(arguments)
    except ValidationError as error:
        first = error.errors()[0]
        if not first["loc"]:  # a check of several settings names them in its message
            return _fail(f"invalid settings: {first['msg']}")
        name = "EXPORTER_" + "_".join(str(part) for part in first["loc"]).upper()
        return _fail(f"invalid setting {name}: {first['msg']}")
    except ConfigError as error:
        return _fail(f"invalid config file: {error}")


def _demo(arguments: argparse.Namespace) -> int:
    import os

    from exporter.demo import main_demo

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token = arguments.token or os.environ.get("EXPORTER_ADMIN_TOKEN")
    return main_demo(arguments.url, token, seed=arguments.seed, rate=arguments.rate,
                     scenario=arguments.scenario, duration=arguments.duration)


def _backup_or_restore(arguments: argparse.Namespace, settings: Settings) -> int:
    from exporter.backup import BackupError, backup, restore

    file = Path(arguments.file)
    try:
        if arguments.command == "backup":
            pages = backup(settings.database_url, file)
            print(f"backed up {pages} pages to {file}")
        else:
            pages = restore(file, settings.database_url)
            print(f"restored {pages} pages from {file}; start the exporter on this ledger")
    except BackupError as error:
        return _fail(str(error))
    return 0


def _prune(arguments: argparse.Namespace, settings: Settings) -> int:
    import datetime
    import getpass

    import orjson

    from exporter.control.audit import Actor, AuditTrail
    from exporter.retention import Pruner

    try:
        before = datetime.datetime.fromisoformat(arguments.before)
    except ValueError:
        return _fail("--before must be a date (YYYY-MM-DD) or an RFC 3339 time")
    if before.tzinfo is None:
        before = before.replace(tzinfo=datetime.UTC)
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        result = Pruner(engine, archive_dir=settings.archive_dir).prune(before.timestamp())
        AuditTrail(engine).record(Actor(f"cli:{getpass.getuser()}"[:64]), "history.prune",
                                  {"before": before.isoformat()}, "done", result.as_dict())
    finally:
        engine.dispose()
    print(orjson.dumps(result.as_dict()).decode())
    return 0


def _prices(settings: Settings, arguments: argparse.Namespace) -> int:
    import orjson

    from exporter.prices import as_dict, model_lines, render
    from exporter.pricing import load_price_table

    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        lines = model_lines(load_price_table(load_config(settings.config_file).pricing), engine,
                            everything=arguments.all)
    finally:
        engine.dispose()
    if arguments.json:
        for line in lines:
            print(orjson.dumps(as_dict(line)).decode())
    else:
        print(render(lines))
    return 1 if any(line.price is None and line.seen for line in lines) else 0


def _new_token(name: str, role: str) -> int:
    from exporter.tokens import TokenConfigError, digest_of, parse_tokens

    secret = secrets.token_urlsafe(32)
    entry = {"name": name, "role": role, "sha256": digest_of(secret).hex()}
    try:
        parse_tokens([entry], "--name/--role")
    except TokenConfigError as error:
        return _fail(str(error))
    print(f"token (shown once; give it to the client): {secret}")
    print("entry for EXPORTER_TOKENS_FILE, under `tokens:`")
    print(f"  - {{name: {name}, role: {role}, sha256: {entry['sha256']}}}")
    return 0


def _import_logs(arguments: argparse.Namespace) -> int:
    import os

    from exporter.importer import LogImport, parse_zone

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        zone = parse_zone(arguments.tz)
    except ValueError as error:
        return _fail(str(error))
    root = Path(arguments.directory)
    if not root.is_dir():
        return _fail(f"{root} is not a directory")
    token = arguments.token or os.environ.get("EXPORTER_ADMIN_TOKEN")
    run = LogImport(root, url=arguments.url, token=token, zone=zone, source=arguments.source)
    return run.follow(arguments.interval) if arguments.follow else run.once()


def _demo_config(settings: Settings) -> FileConfig:
    from exporter.demo import DEMO_CONFIG_YAML

    if settings.config_file is not None:
        return load_config(settings.config_file)
    return parse_config(yaml.safe_load(DEMO_CONFIG_YAML))


def _serve(settings: Settings, arguments: argparse.Namespace) -> int:
    import prometheus_client

    # The serving process decides: no `_created` companion series, which 0.0.4 text turns into
    # stray gauge families that nobody queries.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

    from exporter import interpreter
    from exporter.api import create_app
    from exporter.heap import fix_mmap_threshold
    from exporter.service import build_exporter
    from exporter.tokens import Token, TokenConfigError, TokenRegistry, digest_of

    # Before the ledger's keys are loaded: their tables are the largest blocks freed.
    fix_mmap_threshold(settings.malloc_mmap_threshold_kib)

    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if token is None and not (settings.tokens or settings.tokens_file):
        token = secrets.token_urlsafe(24)
        log.warning("EXPORTER_ADMIN_TOKEN is not set; writes need this generated token: %s",
                    token)
    # The demo's Claude Code sessions send over HTTP, as real ones do, with an ingest token of
    # their own: the settings may name no token this process knows the secret of.
    sessions_secret = secrets.token_urlsafe(24)
    sessions_token = [Token(DEMO_SESSIONS_TOKEN, "ingest", digest_of(sessions_secret))]
    try:
        tokens = TokenRegistry.from_settings(admin_token=token, tokens=settings.tokens,
                                             tokens_file=settings.tokens_file,
                                             also=sessions_token if arguments.demo else ())
    except TokenConfigError as error:
        return _fail(f"invalid tokens: {error}")
    config = _demo_config(settings) if arguments.demo else None
    exporter = build_exporter(settings, config=config)
    exporter.start()
    stop_demo = threading.Event()
    demo = _start_demo(exporter, arguments, stop_demo) if arguments.demo else None
    stop_sessions = threading.Event()
    sessions = _start_sessions(settings, arguments, sessions_secret, stop_sessions) \
        if arguments.demo else None

    def end_sessions() -> None:
        """Before the server stops listening: the sessions' last exports and SessionEnd hooks
        go over HTTP, or the next start would find them live."""
        stop_sessions.set()
        if sessions is not None:
            sessions.join(timeout=SESSIONS_END_SECONDS)

    app = create_app(exporter, tokens=tokens)
    server = _server(app, settings, before_exit=end_sessions)
    log.info("serving on %s://%s:%d (metrics at /metrics)",
             "https" if settings.tls_cert_file else "http", settings.host, settings.port)
    # uvicorn shuts down gracefully on SIGTERM or SIGINT, then raises the signal again against
    # the handlers it found; with the defaults that killed the process before the final
    # checkpoint below, and the next start re-applied every event since the last one.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, lambda _number, _frame: None)
    interpreter.settle(settings.gil_switch_interval_ms)
    try:
        server.run()
    finally:
        stop_sessions.set()
        stop_demo.set()
        if demo is not None:
            # Its wind-down (agents deleted, runs cancelled) must reach the ledger before close,
            # or the next start sees agents still running and reports them stuck.
            demo.join(timeout=10)
        exporter.close()
    return 0


def _server(app: Any, settings: Settings, *, before_exit: Callable[[], None]) -> Any:
    """uvicorn's server, ending the live streams when a shutdown starts: uvicorn waits for open
    responses to finish, and a stream never would (its clients resume from their last seq).
    `before_exit` runs first, while the server still serves: in a thread of its own, since the
    signal arrives on the event loop, which must go on answering (a second signal forces the
    exit at once)."""
    import uvicorn

    class StreamClosingServer(uvicorn.Server):
        exiting = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.exiting:
                super().handle_exit(sig, frame)
                return
            self.exiting = True

            def exit_after() -> None:
                before_exit()
                app.state.hub.close()
                super(StreamClosingServer, self).handle_exit(sig, frame)

            threading.Thread(target=exit_after, name="before-exit", daemon=True).start()

    return StreamClosingServer(uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level,
        access_log=False, timeout_graceful_shutdown=GRACEFUL_SECONDS,
        limit_concurrency=settings.max_connections, ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file))


def _start_sessions(settings: Settings, arguments: argparse.Namespace, secret: str,
                    stop: threading.Event) -> threading.Thread:
    """The demo's simulated Claude Code sessions, posting OTLP and hooks to this server."""
    from exporter.demo_claude_code import send_sessions

    if logging.getLogger("httpx").level == logging.NOTSET:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host,
                                                                     settings.host)
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls_cert_file else "http"
    # Over TLS the certificate need not name the loopback address: the peer is this process.
    thread = threading.Thread(target=send_sessions, name="demo-claude-code", daemon=True,
                              args=(f"{scheme}://{host}:{settings.port}", secret), kwargs={
                                  "seed": arguments.demo_seed, "stop": stop,
                                  "verify": scheme == "http"})
    thread.start()
    return thread


def _start_demo(exporter: Any, arguments: argparse.Namespace,
                stop: threading.Event) -> threading.Thread:
    from exporter.demo import run_demo
    from exporter.events import validate_batch

    def sink(raws: list[dict[str, object]]) -> None:
        events, problems = validate_batch(list(raws), time.time())
        if problems:
            log.error("demo produced invalid events: %s", problems[:3])
            return
        if events:
            exporter.pipeline.submit(events, time.time()).result()

    if arguments.demo_history > 0:  # before the server listens: no scrape sees it half-done
        from exporter.demo import backfill_history

        sent = backfill_history(sink, days=arguments.demo_history, seed=arguments.demo_seed,
                                end=time.time(), openmetrics=arguments.demo_history_openmetrics)
        log.info("demo history: %d events over %g days", sent, arguments.demo_history)
    thread = threading.Thread(target=run_demo, name="demo-fleet", daemon=True, kwargs={
        "sink": sink, "seed": arguments.demo_seed, "rate": arguments.demo_rate,
        "scenario": arguments.demo_scenario, "stop": stop})
    thread.start()
    return thread
