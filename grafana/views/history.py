"""History: spend, agents and tasks over weeks and months, from the history recording rules.

The rules of orchestrator-history.rules are evaluated once an hour, so a bare selector finds a
sample only within 5 minutes of an evaluation. Every query here reads them over a window: the
latest sample (`last_over_time(...[1h])`) or a mean over days, and the panels of daily values
query with a step of a day.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Panel

from grafana import skeleton
from grafana.panels import (
    PER_DAY,
    RATIO,
    USD,
    USD_PER_HOUR,
    matrix_panel,
    query,
    stat_panel,
    table_query,
    timeseries_panel,
)

DAY = "1d"
HOURLY_SPEND = "fleet:orchestrator_cost_usd:increase1h"
WEEKDAYS = {"1": "Monday", "2": "Tuesday", "3": "Wednesday", "4": "Thursday", "5": "Friday",
            "6": "Saturday", "7": "Sunday"}


def latest(rule: str) -> str:
    """The latest sample of a rule recorded once an hour: the one of the hour before."""
    return f"last_over_time({rule}[1h])"


def mean_hourly_spend(window: str, offset: str = "") -> str:
    """Mean spend per hour over `window` (ending `offset` ago), over the hours recorded: hours
    without a sample (Prometheus down, history not yet begun) do not count as $0."""
    shift = f" offset {offset}" if offset else ""
    return f"avg_over_time({HOURLY_SPEND}[{window}]{shift})"


def mean_daily_spend(window: str) -> str:
    return f"24 * {mean_hourly_spend(window)}"


def change(window: str) -> str:
    """Mean spend over the last `window` against the `window` before it, as a ratio - 1."""
    return f"{mean_hourly_spend(window)} / {mean_hourly_spend(window, window)} - 1"


def _daily_by(title: str, unit: str, rule: str, by: str, what: str) -> Builder[Panel]:
    """A daily rule summed by one of its labels, stacked; a task type links to Explore."""
    panel = timeseries_panel(
        title, unit, query(f"sum by ({by}) ({latest(rule)})", f"{{{{{by}}}}}"),
        description=f"{what} in the 24 hours before each point, by {by.replace('_', ' ')}.",
        size=(8, 8), stacked=True, interval=DAY,
    )
    return skeleton.link_to_explore(by, panel) if by in skeleton.EXPLORE_FILTERS else panel


def _spend_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    builder = builder.with_row(dashboard_builders.Row("Spend"))
    for title, unit, expr, description in (
        ("Mean daily spend, last 7 days", USD, mean_daily_spend("7d"),
         "Spend per day over the last 7 days."),
        ("Mean daily spend, last 30 days", USD, mean_daily_spend("30d"),
         "Spend per day over the last 30 days."),
        ("Week over week", RATIO, change("7d"),
         "Mean daily spend over the last 7 days against the 7 days before."),
        ("Month over month", RATIO, change("30d"),
         "Mean daily spend over the last 30 days against the 30 days before (only the days "
         "Prometheus has count)."),
    ):
        builder = builder.with_panel(
            stat_panel(title, unit, query(expr, instant=True), description=description,
                       size=(6, 4), no_value="-")
        )
    builder = (
        builder.with_panel(
            timeseries_panel(
                "Daily spend and its 7-day mean", USD,
                query(latest("fleet:orchestrator_cost_usd:increase1d"), "daily spend"),
                query(mean_daily_spend("7d"), "7-day mean"),
                description=(
                    "Spend over the 24 hours before each point, and the mean daily spend over the "
                    "7 days before it."
                ),
                size=(24, 8), interval=DAY,
            )
        )
        .with_panel(
            timeseries_panel(
                "Week over week and month over month change", RATIO,
                query(change("7d"), "week over week"),
                query(change("30d"), "month over month"),
                description=(
                    "Mean daily spend over the 7 (30) days before each point against the 7 (30) "
                    "days before those."
                ),
                interval=DAY,
            )
        )
        .with_panel(
            timeseries_panel(
                "Spend per hour", USD,
                query(latest(HOURLY_SPEND), "spend"),
                description="Spend in each hour (zoom in to a few days to see every hour).",
                interval="1h",
            )
        )
    )
    for by in ("role", "model", "task_type"):
        builder = builder.with_panel(_daily_by(
            f"Daily spend by {by.replace('_', ' ')}", USD,
            "role_model_task_type:orchestrator_cost_usd:increase1d", by, "Spend"))
    return builder


def _hours_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return builder.with_row(dashboard_builders.Row("Hour of day and weekday")).with_panel(
        matrix_panel(
            "Spend by hour of day and weekday (UTC)", USD_PER_HOUR,
            table_query("avg_over_time(hour_weekday:orchestrator_cost_usd:increase1h[$__range])"),
            rows="weekday", columns="hour", row_names=WEEKDAYS,
            description=(
                "Mean spend in each hour of the week over the dashboard's time range: a row per "
                "weekday, a column per hour of the day (UTC), red where the fleet spends most."
            ),
        )
    )


def _agents_and_tasks_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Agents and tasks"))
        .with_panel(_daily_by("Agents created per day by role", PER_DAY,
                              "role_model:orchestrator_agents_created:increase1d", "role",
                              "Agents created"))
        .with_panel(_daily_by("Tasks completed per day by task type", PER_DAY,
                              "task_type_analyst:orchestrator_tasks_completed:increase1d",
                              "task_type", "Tasks completed"))
        .with_panel(
            timeseries_panel(
                "Cost per completed task per day, with and without ANALYST", USD,
                query(latest("analyst:orchestrator_task_cost_usd_completed:mean1d"),
                      "ANALYST {{analyst}}"),
                description=(
                    "Mean cost of the tasks completed in the 24 hours before each point, for "
                    "tasks with and without an ANALYST agent (no point for a day without one)."
                ),
                size=(8, 8), interval=DAY,
            )
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The History dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.HISTORY_UID,
        title="History",
        description=(
            "Spend, agents and tasks over months, from hourly and daily recording rules: daily "
            "spend and its trend, week over week and month over month, spend by hour and "
            "weekday, agent creation, task completion and cost per task."
        ),
        tags=["history", "costs"],
        variables=[],
    )
    # Recorded once an hour: a refresh every 30 seconds would only repeat the same answer.
    builder = builder.time("now-90d", "now").refresh("1h")
    return _agents_and_tasks_row(_hours_row(_spend_row(builder)))
