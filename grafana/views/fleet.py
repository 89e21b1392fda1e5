"""Fleet overview, the home dashboard: what the fleet is doing and spending right now."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from grafana import skeleton
from grafana.panels import (
    COUNT,
    TOKENS,
    TOKENS_PER_SECOND,
    USD,
    USD_PER_HOUR,
    Conditional,
    alert_groups_panel,
    links_to,
    pie_panel,
    query,
    stat_panel,
    timeseries_panel,
)
from grafana.views.costs import budget_projection_gauge, budget_used_gauge

AGENTS = 'source=~"$source", role=~"$role"'
COST = 'source=~"$source", role=~"$role"'
SOURCE = 'source=~"$source"'
# Alerts of this project share the prefix; other rules in the same Prometheus stay out.
FIRING = 'ALERTS{alertstate="firing", alertname=~"Orchestrator.*"}'


def _now_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    agents_link = links_to("Agents", skeleton.AGENTS_UID)
    work_link = links_to("Workflows and tasks", skeleton.WORKFLOWS_UID)
    return (
        builder.with_row(dashboard_builders.Row("Fleet now"))
        .with_panel(
            stat_panel(
                "Agents", COUNT, query(f"sum(orchestrator_agents{{{AGENTS}}})", instant=True),
                description="Agents not deleted, in every status.",
            ).links(agents_link)
        )
        .with_panel(
            stat_panel(
                "Running agents", COUNT,
                query(f'sum(orchestrator_agents{{{AGENTS}, status="running"}})', instant=True),
                description="Agents whose current status is running: the fleet's concurrency.",
            ).links(agents_link)
        )
        .with_panel(
            stat_panel(
                "Active tasks", COUNT,
                query(f"sum(orchestrator_tasks_in_flight{{{SOURCE}}})", instant=True),
                description="Tasks submitted and not ended (pending or running).",
            ).links(work_link)
        )
        .with_panel(
            stat_panel(
                "Active workflow runs", COUNT,
                query(f"sum(orchestrator_workflow_runs_active{{{SOURCE}}})", instant=True),
                description="Workflow runs started and not ended.",
            ).links(work_link)
        )
        .with_panel(
            stat_panel(
                "Spend rate", USD_PER_HOUR,
                query(f"3600 * sum(rate(orchestrator_cost_usd_total{{{COST}}}[5m]))",
                      instant=True),
                description="What the fleet spends now, in US dollars per hour (last 5 minutes).",
            ).links(links_to("Costs and budgets", skeleton.COSTS_UID))
        )
        .with_panel(
            Conditional(
                stat_panel(
                    "Firing alerts", COUNT, query(f"count({FIRING})", instant=True),
                    description="Orchestrator alerts firing now.",
                    thresholds=((None, "green"), (1, "red")),
                ),
                "Empty, shown as 0, while no alert fires.",
            )
        )
    )


def _shares_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_panel(
            pie_panel(
                "Agents by status", COUNT,
                query(f"sum by (status) (orchestrator_agents{{{AGENTS}}})", "{{status}}",
                      instant=True),
                description="Agents not deleted, by current status.",
            )
        )
        .with_panel(
            pie_panel(
                "Agents by role", COUNT,
                query(f"sum by (role) (orchestrator_agents{{{AGENTS}}})", "{{role}}",
                      instant=True),
                description="Agents not deleted, by role.",
            )
        )
        .with_panel(
            pie_panel(
                "Tasks with and without ANALYST", COUNT,
                query(
                    "sum by (analyst) (increase("
                    f"orchestrator_tasks_submitted_total{{{SOURCE}}}[$__range]))",
                    "ANALYST {{analyst}}", instant=True,
                ),
                description=(
                    "Tasks submitted over the dashboard's time range, split by whether an "
                    "ANALYST agent was included."
                ),
            )
        )
        .with_panel(
            pie_panel(
                "Tasks in flight with and without ANALYST", COUNT,
                query(f"sum by (analyst) (orchestrator_tasks_in_flight{{{SOURCE}}})",
                      "ANALYST {{analyst}}", instant=True),
                description="Tasks pending or running now, split by ANALYST inclusion.",
            )
        )
    )


def _cost_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    increase = f"sum(increase(orchestrator_cost_usd_total{{{COST}}}[$__range]))"
    tokens = f"sum(increase(orchestrator_tokens_total{{{COST}}}[$__range]))"
    return (
        builder.with_row(dashboard_builders.Row("Cost and tokens"))
        .with_panel(
            stat_panel("Cost today", USD, query(increase, instant=True), time_from="now/d",
                       description="Spend since midnight (dashboard time zone).", size=(6, 4))
        )
        .with_panel(
            stat_panel("Cost this month", USD, query(increase, instant=True), time_from="now/M",
                       description="Spend since the first of the month.", size=(6, 4))
        )
        .with_panel(
            stat_panel("Tokens today", TOKENS, query(tokens, instant=True), time_from="now/d",
                       description="Tokens of every type (input, output, cache) since midnight.",
                       size=(6, 4))
        )
        .with_panel(
            stat_panel(
                "Token rate", TOKENS_PER_SECOND,
                query(f"sum(rate(orchestrator_tokens_total{{{COST}}}[5m]))", instant=True),
                description="Tokens per second over the last 5 minutes.", size=(6, 4),
            )
        )
        .with_panel(
            timeseries_panel(
                "Spend rate by role", USD_PER_HOUR,
                query(f"3600 * sum by (role) (rate(orchestrator_cost_usd_total{{{COST}}}"
                      "[$__rate_interval]))", "{{role}}"),
                description="US dollars per hour, by agent role.", stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tokens by type", TOKENS_PER_SECOND,
                query(f"sum by (type) (rate(orchestrator_tokens_total{{{COST}}}"
                      "[$__rate_interval]))", "{{type}}"),
                description="Tokens per second: input, output, cache reads and cache writes.",
                stacked=True,
            )
        )
    )


def _budget_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Budgets and alerts"))
        .with_panel(
            budget_used_gauge((8, 8)).links(links_to("Costs and budgets", skeleton.COSTS_UID))
        )
        .with_panel(budget_projection_gauge((8, 8)))
        .with_panel(
            Conditional(
                alert_groups_panel(
                    "Alerts in Alertmanager",
                    description="Alerts as Alertmanager groups and routes them.",
                    size=(8, 8),
                ),
                "Empty while no alert fires.",
            )
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The home dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.FLEET_UID,
        title="Fleet overview",
        description="Agents, tasks, workflow runs, spend, budgets and alerts right now.",
        tags=["fleet"],
        variables=["source", "role"],
    )
    return _budget_row(_cost_row(_shares_row(_now_row(builder))))
