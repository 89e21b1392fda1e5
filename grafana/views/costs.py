"""Costs and budgets: where the money goes, how efficiently, and how budgets will end."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import gauge

from grafana import skeleton
from grafana.panels import (
    COUNT,
    DASHED,
    RATIO,
    SECONDS,
    TOKENS_PER_SECOND,
    USD,
    USD_PER_HOUR,
    Conditional,
    bar_gauge_panel,
    gauge_panel,
    query,
    stat_panel,
    table_panel,
    table_query,
    timeseries_panel,
)

# The recording rules keep role, model and task_type (and aggregate `source` away), so this
# dashboard filters by those three and shows every source.
SCOPE = 'role=~"$role", model=~"$model", task_type=~"$task_type"'
COST_RATE = f"role_model_task_type:orchestrator_cost_usd:rate5m{{{SCOPE}}}"
TOKEN_RATE = f"role_model_task_type_type:orchestrator_tokens:rate5m{{{SCOPE}}}"
CACHE_READ_RATE = (
    f'role_model_task_type_type:orchestrator_tokens:rate5m{{{SCOPE}, type="cache_read"}}'
)
# The prompt: what the model read, whether fresh, from the cache, or written to it.
PROMPT_RATE = (
    "role_model_task_type_type:orchestrator_tokens:rate5m"
    f'{{{SCOPE}, type=~"input|cache_read|cache_creation"}}'
)
BUDGET_LEGEND = "{{budget}} ({{period}})"
SPENT = f"sum(increase(orchestrator_cost_usd_total{{{SCOPE}}}[$__range]))"


def _spend_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    builder = builder.with_row(dashboard_builders.Row("Spend")).with_panel(
        stat_panel(
            "Spend rate", USD_PER_HOUR, query(f"3600 * sum({COST_RATE})", instant=True),
            description="US dollars per hour over the last 5 minutes.", size=(6, 4),
        )
    )
    for title, time_from, since in (
        ("Today", "now/d", "midnight (dashboard time zone)"),
        ("This week", "now/w", "the start of the week"),
        ("This month", "now/M", "the first of the month"),
    ):
        builder = builder.with_panel(
            stat_panel(title, USD, query(SPENT, instant=True), time_from=time_from,
                       description=f"Spend since {since}.", size=(6, 4))
        )
    for by in ("role", "model", "task_type"):
        panel = timeseries_panel(
            f"Spend rate by {by.replace('_', ' ')}", USD_PER_HOUR,
            query(f"3600 * sum by ({by}) ({COST_RATE})", f"{{{{{by}}}}}"),
            description=f"US dollars per hour by {by.replace('_', ' ')} (5-minute rate).",
            size=(8, 8), stacked=True,
        )
        # A task type opens Explore filtered by it; roles and models are not among its filters.
        builder = builder.with_panel(
            skeleton.link_to_explore(by, panel) if by in skeleton.EXPLORE_FILTERS else panel
        )
    return (
        builder.with_panel(
            timeseries_panel(
                "Trailing spend: day, week and month", USD,
                *[
                    query(f"sum(increase(orchestrator_cost_usd_total{{{SCOPE}}}[{window}]))",
                          f"last {name}")
                    for window, name in (("1d", "24 hours"), ("7d", "7 days"), ("30d", "30 days"))
                ],
                description="Spend over the 24 hours, 7 days and 30 days before each moment.",
            )
        )
        .with_panel(
            skeleton.link_to_explore("workflow", timeseries_panel(
                "Spend rate by workflow", USD_PER_HOUR,
                query(
                    "3600 * sum by (workflow) (rate("
                    f"orchestrator_cost_usd_total{{{SCOPE}}}[$__rate_interval]))",
                    "{{workflow}}",
                ),
                description="US dollars per hour by workflow (none: work outside a workflow run).",
                stacked=True,
            ))
        )
    )


def _top_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    builder = builder.with_row(dashboard_builders.Row("Top 10 over the range"))
    for by, name in (("role", "roles"), ("model", "models"), ("task_type", "task types")):
        panel = bar_gauge_panel(
            f"Costliest {name}", USD,
            query(
                f"topk(10, sum by ({by}) (increase("
                f"orchestrator_cost_usd_total{{{SCOPE}}}[$__range])))",
                f"{{{{{by}}}}}", instant=True,
            ),
            description=f"Spend over the dashboard's time range, the ten costliest {name}.",
            size=(6, 8),
        )
        builder = builder.with_panel(
            skeleton.link_to_explore(by, panel) if by in skeleton.EXPLORE_FILTERS else panel
        )
    return builder.with_panel(
        skeleton.link_to_explore("agent_id", bar_gauge_panel(
            "Costliest live agents", USD,
            query(
                'topk(10, orchestrator_agent_cost_usd{role=~"$role"} * on (source, agent_id) '
                'group_left (model) orchestrator_agent_info{model=~"$model"})',
                "{{agent_id}} ({{role}}, {{model}})", instant=True,
            ),
            description="Cost so far of the ten costliest agents still alive.",
            size=(6, 8),
        ))
    )


def _efficiency_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    task_cost = (
        "sum by (analyst) (increase(orchestrator_task_cost_usd_{part}"
        '{{task_type=~"$task_type", status="completed"}}[$__range]))'
    )
    return (
        builder.with_row(dashboard_builders.Row("Efficiency"))
        .with_panel(
            bar_gauge_panel(
                "Cost per completed task, with and without ANALYST", USD,
                query(f"{task_cost.format(part='sum')} / {task_cost.format(part='count')}",
                      "ANALYST {{analyst}}", instant=True),
                description=(
                    "Mean cost of a completed task over the dashboard's range, for tasks with and "
                    "without an ANALYST agent."
                ),
                size=(8, 8),
            )
        )
        .with_panel(
            skeleton.link_to_explore("task_type", timeseries_panel(
                "Cost per completed task by task type", USD,
                query(
                    "task_type_analyst:orchestrator_task_cost_usd_completed:mean1h"
                    '{task_type=~"$task_type"}',
                    "{{task_type}}, ANALYST {{analyst}}",
                ),
                description="Mean cost of a completed task over the last hour (recording rule).",
                size=(16, 8),
            ))
        )
        .with_panel(
            timeseries_panel(
                "Cost per 1k tokens by model", USD,
                query(f"1000 * sum by (model) ({COST_RATE}) / sum by (model) ({TOKEN_RATE})",
                      "{{model}}"),
                description="US dollars per thousand tokens of every type, by model.",
                size=(8, 8),
            )
        )
        .with_panel(
            timeseries_panel(
                "Cache-read share of prompt tokens by model", RATIO,
                query(f"sum by (model) ({CACHE_READ_RATE}) / sum by (model) ({PROMPT_RATE})",
                      "{{model}}"),
                description=(
                    "Share of prompt tokens (input, cache reads, cache writes) served from the "
                    "prompt cache: higher is cheaper."
                ),
                size=(8, 8),
            )
        )
        .with_panel(
            timeseries_panel(
                "Tokens by type", TOKENS_PER_SECOND,
                query(f"sum by (type) ({TOKEN_RATE})", "{{type}}"),
                description="Tokens per second by type (5-minute rate).",
                size=(8, 8), stacked=True,
            )
        )
    )


def budget_used_gauge(size: tuple[int, int]) -> gauge.Panel:
    """Each budget's spend as a share of its limit (also on the Fleet overview)."""
    return gauge_panel(
        "Budget used", RATIO,
        query("budget:orchestrator_budget_spent:ratio", BUDGET_LEGEND, instant=True),
        description="Spend in the budget's current calendar period as a share of its limit.",
        size=size,
    )


def budget_projection_gauge(size: tuple[int, int]) -> gauge.Panel:
    """Each budget's projected spend as a share of its limit (also on the Fleet overview)."""
    return gauge_panel(
        "Budget projected at period end", RATIO,
        query(
            "budget:orchestrator_budget_spent_usd:projected_burn_rate1h"
            " / budget:orchestrator_budget_limit_usd:max",
            BUDGET_LEGEND, instant=True,
        ),
        description=(
            "Spend at the end of the budget's period if the last hour's burn rate holds, as a "
            "share of the limit."
        ),
        size=size,
    )


def _budget_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Budgets"))
        .with_panel(
            table_panel(
                "Budgets", USD,
                table_query("budget:orchestrator_budget_spent_usd:max"),
                table_query("budget:orchestrator_budget_limit_usd:max"),
                table_query("budget:orchestrator_budget_spent:ratio"),
                table_query("budget:orchestrator_budget_spent_usd:projected_burn_rate1h"),
                table_query("budget:orchestrator_budget_spent_usd:projected_period_average"),
                table_query("budget:orchestrator_budget_exhaustion:seconds_burn_rate1h"),
                description=(
                    "Each budget of the config file in its current calendar period (UTC): spend, "
                    "limit, share used, the spend projected at the period's end from the last "
                    "hour's burn rate and from the period's average, and the time left until "
                    "the limit at the last hour's burn rate (empty when not burning)."
                ),
                size=(24, 7),
                columns=(
                    ("budget", "Budget", None),
                    ("period", "Period", None),
                    ("Value #A", "Spent", USD),
                    ("Value #B", "Limit", USD),
                    ("Value #C", "Used", RATIO),
                    ("Value #D", "Projected (last hour's rate)", USD),
                    ("Value #E", "Projected (period average)", USD),
                    ("Value #F", "Limit reached in", SECONDS),
                ),
                sort_by="Used",
            )
        )
        .with_panel(budget_used_gauge((12, 6)))
        .with_panel(budget_projection_gauge((12, 6)))
        .with_panel(
            timeseries_panel(
                "Budget spend, projection and limit", USD,
                query("budget:orchestrator_budget_spent_usd:max", f"{BUDGET_LEGEND} spent"),
                query("budget:orchestrator_budget_spent_usd:projected_burn_rate1h",
                      f"{BUDGET_LEGEND} projected"),
                query("budget:orchestrator_budget_limit_usd:max", f"{BUDGET_LEGEND} limit"),
                description="Spend within each budget's period against its limit.",
                size=(24, 8),
            )
            .override_by_regexp(".* limit$", DASHED)
            .override_by_regexp(".* projected$", DASHED)
        )
    )


def _anomaly_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    bands = (
        ("upper_band", "upper band"),
        ("baseline", "baseline"),
        ("lower_band", "lower band"),
    )
    return (
        builder.with_row(dashboard_builders.Row("Anomalies (whole fleet)"))
        .with_panel(
            timeseries_panel(
                "Spend rate and its anomaly band", USD_PER_HOUR,
                query("3600 * fleet:orchestrator_cost_usd:rate5m", "spend rate"),
                *[
                    query(f"3600 * fleet:orchestrator_cost_usd:rate5m_{rule}", name)
                    for rule, name in bands
                ],
                description=(
                    "The fleet's spend rate against the band of the cost-anomaly alert: the "
                    "alert fires while the rate stays above the upper band. Not filtered by "
                    "the variables."
                ),
                legend_calcs=("lastNotNull",),
            ).override_by_regexp(".*band|baseline", DASHED)
        )
        .with_panel(
            timeseries_panel(
                "Token rate and its anomaly band", TOKENS_PER_SECOND,
                query("fleet:orchestrator_tokens:rate5m", "token rate"),
                *[query(f"fleet:orchestrator_tokens:rate5m_{rule}", name) for rule, name in bands],
                description=(
                    "The fleet's token rate against the band of the token-anomaly alert. Not "
                    "filtered by the variables."
                ),
                legend_calcs=("lastNotNull",),
            ).override_by_regexp(".*band|baseline", DASHED)
        )
        .with_panel(
            Conditional(
                bar_gauge_panel(
                    "Usage without a price", COUNT,
                    query(
                        "sort_desc(sum by (model) (increase("
                        'orchestrator_unpriced_usage_events_total{model=~"$model"}[$__range])))',
                        "{{model}}", instant=True,
                    ),
                    description=(
                        "Usage events without cost_usd whose model is not in the price table: "
                        "counted at $0, so spend is under-reported until the model is priced."
                    ),
                    size=(24, 6),
                ),
                "Empty while every model is priced.",
            )
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The Costs and budgets dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.COSTS_UID,
        title="Costs and budgets",
        description=(
            "Spend by role, model and task type; top spenders; cost efficiency; budgets with "
            "projections; anomaly bands."
        ),
        tags=["costs", "budgets"],
        variables=["role", "model", "task_type"],
    )
    return _anomaly_row(_budget_row(_efficiency_row(_top_row(_spend_row(builder)))))
