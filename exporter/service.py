"""The composition root: builds the ledger, state, pipeline and renderer from the settings."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from exporter.config import FileConfig, load_config
from exporter.control.audit import AuditTrail
from exporter.control.budget_book import BudgetBook
from exporter.control.enforcer import BudgetEnforcer
from exporter.control.queue import CommandQueue
from exporter.fairlock import FairLock
from exporter.ledger import Ledger, make_engine, make_read_engine, migrate
from exporter.metrics import MetricsRenderer
from exporter.pipeline import IngestPipeline
from exporter.pricing import load_price_table
from exporter.retention import Pruner, RetentionThread
from exporter.settings import Settings
from exporter.state import FleetState
from exporter.telemetry import QueuedCommands, Telemetry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Exporter:
    """Everything the API, the CLI and an embedding orchestrator need, wired together."""

    settings: Settings
    config: FileConfig
    ledger: Ledger
    state: FleetState
    pipeline: IngestPipeline
    renderer: MetricsRenderer
    telemetry: Telemetry
    commands: CommandQueue
    audit: AuditTrail
    lock: FairLock
    enforcer: BudgetEnforcer
    budgets: BudgetBook
    retention: RetentionThread | None = None

    def start(self) -> None:
        """Migrate the ledger, restore the counters from it, start the writer."""
        started = time.perf_counter()
        migrate(self.ledger.engine)
        self.budgets.load()
        replayed = self.pipeline.recover()
        self.ledger.open_writer()
        self.pipeline.start()
        self.enforcer.start()
        if self.retention is not None:
            self.retention.start()
        log.info("ledger ready in %.2f s: %d live agents, %d tasks in flight, %d events "
                 "applied after the last checkpoint", time.perf_counter() - started,
                 len(self.state.live), len(self.state.tasks), replayed)

    def close(self) -> None:
        """Commit what is queued and release the database."""
        if self.retention is not None:
            self.retention.stop()
        self.enforcer.stop()
        self.pipeline.stop()
        self.ledger.close()


def build_exporter(settings: Settings, *, registry: CollectorRegistry | None = None,
                   config: FileConfig | None = None) -> Exporter:
    """Build (not start) an exporter; `registry` defaults to a fresh one, never the global."""
    config = config if config is not None else load_config(settings.config_file)
    registry = registry if registry is not None else CollectorRegistry()
    telemetry = Telemetry(registry)
    state = FleetState(prices=load_price_table(config.pricing), budgets=config.budgets,
                       label_value_limit=settings.label_value_limit)
    lock = FairLock()
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous,
                         sqlite_max_bytes=settings.sqlite_max_bytes,
                         sqlite_cache_mib=settings.sqlite_cache_mib)
    ledger = Ledger(engine, make_read_engine(settings.database_url, engine))
    pipeline = IngestPipeline(ledger=ledger, state=state, lock=lock, telemetry=telemetry,
                              checkpoint_seconds=settings.checkpoint_seconds)
    commands = CommandQueue(ledger.engine, reader=ledger.reader,
                            redeliver_seconds=settings.command_redeliver_seconds)
    queried = CollectorRegistry()
    queried.register(QueuedCommands(commands.queued_by_kind))
    renderer = MetricsRenderer(state=state, lock=lock, registry=registry, queried=queried,
                               live_agent_limit=settings.live_agent_limit)
    audit = AuditTrail(ledger.engine, reader=ledger.reader)
    enforcer = BudgetEnforcer(state=state, lock=lock, queue=commands, audit=audit)
    budgets = BudgetBook(config_budgets=config.budgets, ledger=ledger, pipeline=pipeline,
                         state=state, release=enforcer.release)
    retention = None if not settings.retention_days else RetentionThread(
        Pruner(ledger.engine, archive_dir=settings.archive_dir), days=settings.retention_days,
        archive_days=settings.archive_days, interval=settings.retention_interval_seconds)
    return Exporter(settings=settings, config=config, ledger=ledger, state=state,
                    pipeline=pipeline, renderer=renderer, telemetry=telemetry,
                    commands=commands, audit=audit, lock=lock, enforcer=enforcer,
                    budgets=budgets, retention=retention)
