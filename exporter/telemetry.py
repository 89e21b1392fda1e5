"""The exporter's own process metrics, on an injected prometheus_client registry."""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.control.commands import KINDS

COMMAND_OUTCOMES = ("queued", "duplicate", "refused", "delivered", "succeeded", "failed",
                    "rejected")

REJECT_REASONS = ("invalid", "oversize", "malformed", "unauthorized")
# Ingest, commit and render times: half a millisecond to seconds, roughly x2.5 per bucket.
EXPORTER_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                             1.0, 2.5, 5.0)


class Telemetry:
    """Counters and timings of ingest, ledger and scrapes; they start from zero with the process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        Gauge("orchestrator_exporter_build_info", "Always 1; the exporter's version.",
              ("version", "python_version"), registry=registry,
              ).labels(__version__, platform.python_version()).set(1)
        self.rejected = Counter("orchestrator_exporter_events_rejected", "Events refused, by "
                                "reason: invalid, oversize, malformed, unauthorized.",
                                ("reason",), registry=registry)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.batch_duration = Histogram(
            "orchestrator_exporter_ingest_batch_duration_seconds",
            "Time from queuing a batch (HTTP or in-process) to its answer: committed and counted.",
            registry=registry,
            buckets=EXPORTER_DURATION_BUCKETS)
        self.commit_duration = Histogram(
            "orchestrator_exporter_ledger_commit_duration_seconds",
            "Duration of one ledger transaction.", registry=registry,
            buckets=EXPORTER_DURATION_BUCKETS)
        self.ledger_errors = Counter("orchestrator_exporter_ledger_errors", "Ledger failures, "
                                     "by operation: write, read.", ("operation",),
                                     registry=registry)
        for operation in ("write", "read"):
            self.ledger_errors.labels(operation)
        self.render_duration = Histogram(
            "orchestrator_exporter_metrics_render_duration_seconds", "Time to render /metrics.",
            registry=registry, buckets=EXPORTER_DURATION_BUCKETS)
        self.queue = Gauge("orchestrator_exporter_ingest_queue_events", "Events validated and "
                           "waiting for the ledger writer.", registry=registry)
        self.commands = Counter("orchestrator_exporter_commands", "Commands by kind and what "
                                "happened: queued, duplicate (same idempotency key), refused "
                                "(invalid, or its target absent or ended), delivered, "
                                "succeeded, failed, rejected (the orchestrator has no "
                                "handler).", ("kind", "outcome"), registry=registry)
        for kind in KINDS:
            for outcome in COMMAND_OUTCOMES:
                self.commands.labels(kind, outcome)
        self.command_delivery = Histogram(
            "orchestrator_exporter_command_delivery_seconds", "From a command's creation to its "
            "first delivery to an orchestrator.", registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))


class QueuedCommands(Collector):
    """`orchestrator_exporter_commands_queued{kind}`, as the command queue last counted it in the
    ledger (again after each of its writes)."""

    def __init__(self, count: Callable[[], dict[str, int]]) -> None:
        self.count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("orchestrator_exporter_commands_queued",
                                   "Commands waiting for an orchestrator to take them.",
                                   labels=("kind",))
        try:
            counts = self.count()
        except Exception:  # the ledger not answering must not cost the whole scrape
            logging.getLogger(__name__).exception("counting the queued commands failed")
            return
        for kind in KINDS:
            family.add_metric((kind,), counts.get(kind, 0))
        yield family
