"""Exporter health: is the exporter keeping up, and how close are its series to their caps."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.models import common

from grafana import skeleton
from grafana.panels import (
    BYTES,
    COUNT,
    ERRORS_PER_SECOND,
    EVENTS_PER_SECOND,
    RATIO,
    SECONDS,
    VALUES_PER_SECOND,
    Conditional,
    bar_gauge_panel,
    query,
    right_axis,
    stat_panel,
    table_panel,
    table_query,
    timeseries_panel,
)

JOB = 'job=~"$job"'


def _quantiles(metric: str, what: str) -> list[prometheus_builders.Dataquery]:
    return [
        query(
            f"histogram_quantile({quantile}, sum by (le) (rate({metric}_bucket{{{JOB}}}"
            "[$__rate_interval])))",
            f"{what} {name}",
        )
        for quantile, name in (("0.5", "p50"), ("0.99", "p99"))
    ]


def _summary_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Now"))
        .with_panel(
            stat_panel(
                "Exporters up", COUNT, query(f"sum(up{{{JOB}}})", instant=True),
                description="Exporter targets Prometheus scraped successfully last time.",
                thresholds=((None, "red"), (1, "green")),
            )
        )
        .with_panel(
            stat_panel(
                "Events accepted", EVENTS_PER_SECOND,
                query(f"sum(rate(orchestrator_exporter_events_accepted_total{{{JOB}}}[5m]))",
                      instant=True),
                description="Events stored per second over the last 5 minutes.",
            )
        )
        .with_panel(
            stat_panel(
                "Ingest queue", COUNT,
                query(f"sum(orchestrator_exporter_ingest_queue_events{{{JOB}}})", instant=True),
                description="Events validated and waiting for the ledger writer.",
            )
        )
        .with_panel(
            stat_panel(
                "Scrape duration", SECONDS, query(f"max(scrape_duration_seconds{{{JOB}}})",
                                                  instant=True),
                description="How long Prometheus took for the last scrape of /metrics.",
                thresholds=((None, "green"), (1, "orange"), (5, "red")),
            )
        )
        .with_panel(
            stat_panel(
                "Live agents of the cap", RATIO,
                query(
                    f"max(orchestrator_exporter_live_agents{{{JOB}}})"
                    f" / max(orchestrator_exporter_live_agents_limit{{{JOB}}} > 0)",
                    instant=True,
                ),
                description=(
                    "Live agents with per-agent series as a share of EXPORTER_LIVE_AGENT_LIMIT."
                ),
                thresholds=((None, "green"), (0.8, "orange"), (1, "red")),
            )
        )
        .with_panel(
            stat_panel(
                "Version", COUNT,
                query(f"orchestrator_exporter_build_info{{{JOB}}}", "{{version}}", instant=True),
                description="The exporter's version (several when versions are mixed).",
            ).text_mode(common.BigValueTextMode.NAME)
        )
    )


def _ingest_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Ingest"))
        .with_panel(
            timeseries_panel(
                "Events accepted by type", EVENTS_PER_SECOND,
                query(
                    "sum by (type) (rate("
                    f"orchestrator_exporter_events_accepted_total{{{JOB}}}[$__rate_interval]))",
                    "{{type}}",
                ),
                description="Events stored per second, by event type.", stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Ingest latency", SECONDS,
                *_quantiles("orchestrator_exporter_ingest_batch_duration_seconds", "batch"),
                query(f"max(orchestrator_exporter_ingest_queue_events{{{JOB}}})",
                      "queued events"),
                description=(
                    "Time from receiving a batch to its durable commit (P50, P99), and the "
                    "events waiting for the ledger writer (right axis)."
                ),
            ).override_by_name("queued events", right_axis(COUNT))
        )
        .with_panel(
            timeseries_panel(
                "Events rejected by reason", EVENTS_PER_SECOND,
                query(
                    "sum by (reason) (rate("
                    f"orchestrator_exporter_events_rejected_total{{{JOB}}}"
                    "[$__rate_interval]))",
                    "{{reason}}",
                ),
                description=(
                    "Events refused: invalid, oversize, malformed or unauthorized. Sustained "
                    "rejections mean a sender is misconfigured."
                ),
                stacked=True,
            )
        )
        .with_panel(
            Conditional(
                timeseries_panel(
                    "Duplicate events by type", EVENTS_PER_SECOND,
                    query(
                        "sum by (type) (rate("
                        f"orchestrator_exporter_events_duplicate_total{{{JOB}}}"
                        "[$__rate_interval]))",
                        "{{type}}",
                    ),
                    description=(
                        "Events acknowledged as duplicates of an accepted id (retries of a "
                        "sender) and counted nowhere."
                    ),
                    stacked=True,
                ),
                "Empty until a sender repeats an event id.",
            )
        )
    )


def _control_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    """Commands to the orchestrators (docs/control.md): what was asked and what came of it."""
    return (
        builder.with_row(dashboard_builders.Row("Commands"))
        .with_panel(
            stat_panel(
                "Commands waiting", COUNT,
                query(f"sum(orchestrator_exporter_commands_queued{{{JOB}}})", instant=True),
                description="Commands queued that no orchestrator has taken yet. Growing: no "
                            "orchestrator takes commands (docs/control.md).",
                thresholds=((None, "green"), (10, "orange"), (100, "red")),
                size=(4, 8),
            )
        )
        .with_panel(
            Conditional(
                table_panel(
                    "Recent commands and their outcomes", COUNT,
                    table_query(
                        "sum by (kind, outcome) (increase("
                        f"orchestrator_exporter_commands_total{{{JOB}}}[24h])) > 0"),
                    description="Commands of the last 24 hours by kind and outcome: queued, "
                                "duplicate, refused, delivered, succeeded, failed. Each one "
                                "is in the audit trail (GET /api/v1/audit).",
                    size=(8, 8),
                    columns=(("kind", "Kind", None), ("outcome", "Outcome", None),
                             ("Value", "Commands", COUNT)),
                    sort_by="Commands",
                ),
                "Empty until a command is issued.",
            )
        )
        .with_panel(
            Conditional(
                timeseries_panel(
                    "Command delivery latency", SECONDS,
                    *_quantiles("orchestrator_exporter_command_delivery_seconds", "delivery"),
                    description="From a command's creation to its first delivery to an "
                                "orchestrator (P50, P99).",
                ),
                "Empty until an orchestrator takes a command.",
            )
        )
    )


def _scrape_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Scrape and ledger"))
        .with_panel(
            timeseries_panel(
                "Scrape and render duration", SECONDS,
                query(f"max(scrape_duration_seconds{{{JOB}}})", "scrape"),
                *_quantiles("orchestrator_exporter_metrics_render_duration_seconds", "render"),
                description="Prometheus' scrape of /metrics and the exporter's time to render it.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Ledger commit latency", SECONDS,
                *_quantiles("orchestrator_exporter_ledger_commit_duration_seconds", "commit"),
                description="Duration of one ledger transaction (P50, P99).",
            )
        )
        .with_panel(
            timeseries_panel(
                "Ledger errors by operation", ERRORS_PER_SECOND,
                query(
                    "sum by (operation) (rate("
                    f"orchestrator_exporter_ledger_errors_total{{{JOB}}}[$__rate_interval]))",
                    "{{operation}}",
                ),
                description="Ledger failures per second, by operation (write, read).",
            )
        )
        .with_panel(
            timeseries_panel(
                "Process memory and CPU", BYTES,
                query(f"max(process_resident_memory_bytes{{{JOB}}})", "resident memory"),
                query(f"sum(rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval]))",
                      "CPU (cores)"),
                description="Resident memory, and CPU time per second (right axis).",
            ).override_by_name("CPU (cores)", right_axis(COUNT))
        )
    )


def _caps_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Series against their caps"))
        .with_panel(
            bar_gauge_panel(
                "Label values of the cap", RATIO,
                query(
                    f"max by (label) (orchestrator_exporter_label_values{{{JOB}}})"
                    f" / scalar(max(orchestrator_exporter_label_values_limit{{{JOB}}}))",
                    "{{label}}", instant=True,
                ),
                description=(
                    "Distinct values held per capped label, as a share of "
                    "EXPORTER_LABEL_VALUE_LIMIT; beyond it new values are reported as `other`."
                ),
                size=(8, 8),
            )
        )
        .with_panel(
            timeseries_panel(
                "Live agents and their cap", COUNT,
                query(f"max(orchestrator_exporter_live_agents{{{JOB}}})", "live agents"),
                query(f"max(orchestrator_exporter_live_agents_limit{{{JOB}}})", "cap"),
                query(f"max(orchestrator_exporter_live_agents_over_limit{{{JOB}}})",
                      "over the cap"),
                description=(
                    "Live agents with per-agent series, the cap, and the agents without series "
                    "because the cap was reached (still counted everywhere else)."
                ),
                size=(8, 8),
            )
        )
        .with_panel(
            timeseries_panel(
                "Samples per scrape", COUNT,
                query(f"sum(scrape_samples_scraped{{{JOB}}})", "samples"),
                description="Series the exporter exposes: what it costs Prometheus.",
                size=(8, 8),
            )
        )
        .with_panel(
            timeseries_panel(
                "Label values reported as other", VALUES_PER_SECOND,
                query(
                    "sum by (label) (rate("
                    f"orchestrator_exporter_label_overflow_total{{{JOB}}}[$__rate_interval]))",
                    "{{label}}",
                ),
                description="Values folded into `other` per second because the label was full.",
                size=(24, 7),
            )
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The Exporter health dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.EXPORTER_UID,
        title="Exporter health",
        description=(
            "Ingest rate, rejections, duplicates, scrape and ledger latency, and series counts "
            "against their caps."
        ),
        tags=["exporter"],
        variables=["job"],
    )
    return _control_row(_caps_row(_scrape_row(_ingest_row(_summary_row(builder)))))
