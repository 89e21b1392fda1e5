"""Workflows and tasks: runs, tasks and steps, how fast and how reliably they complete."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from grafana import skeleton
from grafana.panels import (
    COUNT,
    PER_MINUTE,
    RATIO,
    SECONDS,
    bar_gauge_panel,
    heatmap_panel,
    heatmap_query,
    query,
    stat_panel,
    table_panel,
    table_query,
    timeseries_panel,
)

# The recording rules aggregate `source` away, so this dashboard shows every source and filters
# by workflow and task type only.
RUNS = 'workflow=~"$workflow"'
TASKS = 'task_type=~"$task_type"'


def _ratio(metric: str, by: str, matchers: str, window: str) -> str:
    """completed / (completed + failed): a cancellation is a decision, not a failure."""
    grouping = f"sum by ({by})" if by else "sum"
    return (
        f'{grouping} (rate({metric}{{{matchers}, status="completed"}}[{window}])) / '
        f'{grouping} (rate({metric}{{{matchers}, status=~"completed|failed"}}[{window}]))'
    )


def _now_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    success = ((None, "red"), (0.9, "orange"), (0.99, "green"))
    return (
        builder.with_row(dashboard_builders.Row("Now"))
        .with_panel(
            stat_panel(
                "Active workflow runs", COUNT,
                query(f"sum(orchestrator_workflow_runs_active{{{RUNS}}})", instant=True),
                description="Workflow runs started and not ended.", size=(6, 4),
            )
        )
        .with_panel(
            stat_panel(
                "Tasks in flight", COUNT,
                query(f"sum(orchestrator_tasks_in_flight{{{TASKS}}})", instant=True),
                description="Tasks submitted and not ended (pending or running).", size=(6, 4),
            )
        )
        .with_panel(
            stat_panel(
                "Run success (1 h)", RATIO,
                query(_ratio("orchestrator_workflow_runs_total", "", RUNS, "1h"), instant=True),
                description="Completed runs / (completed + failed) over the last hour.",
                size=(6, 4), thresholds=success,
            )
        )
        .with_panel(
            stat_panel(
                "Task success (1 h)", RATIO,
                query(_ratio("orchestrator_tasks_total", "", TASKS, "1h"), instant=True),
                description="Completed tasks / (completed + failed) over the last hour.",
                size=(6, 4), thresholds=success,
            )
        )
    )


def _throughput_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Runs and tasks"))
        .with_panel(
            timeseries_panel(
                "Workflow runs ended by status", PER_MINUTE,
                query(
                    "60 * sum by (status) (rate("
                    f"orchestrator_workflow_runs_total{{{RUNS}}}[$__rate_interval]))",
                    "{{status}}",
                ),
                description="Runs ended per minute: completed, failed, cancelled.", stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tasks ended by status", PER_MINUTE,
                query(
                    "60 * sum by (status) (rate("
                    f"orchestrator_tasks_total{{{TASKS}}}[$__rate_interval]))",
                    "{{status}}",
                ),
                description="Tasks ended per minute: completed, failed, cancelled.", stacked=True,
            )
        )
        .with_panel(
            skeleton.link_to_explore("workflow", timeseries_panel(
                "Run success ratio by workflow", RATIO,
                query(f"workflow:orchestrator_workflow_runs_success:ratio_rate1h{{{RUNS}}}",
                      "{{workflow}}"),
                description="Completed / (completed + failed) runs over the last hour.",
            ))
        )
        .with_panel(
            skeleton.link_to_explore("task_type", timeseries_panel(
                "Task success and failure ratio by task type", RATIO,
                query(f"task_type:orchestrator_tasks_success:ratio_rate1h{{{TASKS}}}",
                      "{{task_type}} success (1 h)"),
                query(f"task_type:orchestrator_tasks_failure:ratio_rate30m{{{TASKS}}}",
                      "{{task_type}} failure (30 min)"),
                description=(
                    "Success over the last hour and failure over the last 30 minutes (the "
                    "window of the failure alert)."
                ),
            ))
        )
        .with_panel(
            timeseries_panel(
                "Throughput", PER_MINUTE,
                query(f'60 * sum(rate(orchestrator_workflow_runs_total{{{RUNS}, '
                      'status="completed"}[$__rate_interval]))', "runs completed"),
                query(f'60 * sum(rate(orchestrator_tasks_total{{{TASKS}, '
                      'status="completed"}[$__rate_interval]))', "tasks completed"),
                query(f'60 * sum(rate(orchestrator_steps_total{{{RUNS}, '
                      'status="completed"}[$__rate_interval]))', "steps completed"),
                description="Runs, tasks and steps completed per minute.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Concurrency", COUNT,
                query(f"sum(orchestrator_workflow_runs_active{{{RUNS}}})", "workflow runs"),
                query(f"sum by (status) (orchestrator_tasks_in_flight{{{TASKS}}})",
                      "tasks {{status}}"),
                query('sum(orchestrator_agents{status="running"})', "agents running"),
                description="Runs, tasks and agents in progress at once.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Task success with and without ANALYST", RATIO,
                query(_ratio("orchestrator_tasks_total", "analyst", TASKS, "1h"),
                      "ANALYST {{analyst}}"),
                description=(
                    "Completed / (completed + failed) tasks over the last hour, for tasks with "
                    "and without an ANALYST agent."
                ),
            )
        )
        .with_panel(
            skeleton.link_to_explore("workflow", timeseries_panel(
                "Workflow run duration P95 by workflow", SECONDS,
                query(
                    "histogram_quantile(0.95, sum by (workflow, le) (rate("
                    f"orchestrator_workflow_run_duration_seconds_bucket{{{RUNS}}}"
                    "[$__rate_interval])))",
                    "{{workflow}}",
                ),
                description="95th percentile of the duration of ended runs, by workflow.",
            ))
        )
    )


def _steps_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    quantiles = [
        query(f"workflow_step:orchestrator_step_duration_seconds:{name}_rate5m{{{RUNS}}}",
              f"{{{{workflow}}}} / {{{{step}}}} {name}")
        for name in ("p50", "p95", "p99")
    ]
    over_range = [
        table_query(
            f"histogram_quantile({quantile}, sum by (workflow, step, le) (rate("
            f"orchestrator_step_duration_seconds_bucket{{{RUNS}}}[$__range])))"
        )
        for quantile in ("0.50", "0.95", "0.99")
    ]
    return (
        builder.with_row(dashboard_builders.Row("Steps"))
        .with_panel(
            skeleton.link_to_explore("workflow", timeseries_panel(
                "Step duration P50, P95 and P99 by workflow and step", SECONDS, *quantiles,
                description="Quantiles of step duration over 5 minutes (recording rules).",
                size=(24, 9),
            ))
        )
        .with_panel(
            skeleton.link_to_explore("workflow", table_panel(
                "Slowest steps", SECONDS, *over_range,
                description="Step duration quantiles over the dashboard's range, slowest first.",
                size=(12, 8),
                columns=(
                    ("workflow", "Workflow", None),
                    ("step", "Step", None),
                    ("Value #A", "P50", SECONDS),
                    ("Value #B", "P95", SECONDS),
                    ("Value #C", "P99", SECONDS),
                ),
                sort_by="P95",
            ), column="Workflow")
        )
        .with_panel(
            skeleton.link_to_explore("workflow", timeseries_panel(
                "Step retries", PER_MINUTE,
                query(
                    "60 * sum by (workflow, step) (rate("
                    f"orchestrator_step_retries_total{{{RUNS}}}[$__rate_interval]))",
                    "{{workflow}} / {{step}}",
                ),
                description="Step retries per minute, by workflow and step.",
            ))
        )
        .with_panel(
            timeseries_panel(
                "Steps ended by status", PER_MINUTE,
                query(
                    "60 * sum by (status) (rate("
                    f"orchestrator_steps_total{{{RUNS}}}[$__rate_interval]))",
                    "{{status}}",
                ),
                description="Steps ended per minute: completed, failed, skipped, cancelled.",
                stacked=True,
            )
        )
        .with_panel(
            skeleton.link_to_explore("workflow", bar_gauge_panel(
                "Steps failed over the range", COUNT,
                query(
                    "sort_desc(sum by (workflow, step) (increase("
                    f'orchestrator_steps_total{{{RUNS}, status="failed"}}[$__range])))',
                    "{{workflow}} / {{step}}", instant=True,
                ),
                description="Failed steps over the dashboard's range, by workflow and step.",
                size=(12, 8),
            ))
        )
    )


def _tasks_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Tasks and failures"))
        .with_panel(
            heatmap_panel(
                "Task duration", SECONDS,
                heatmap_query(
                    "sum by (le) (increase("
                    f"orchestrator_task_duration_seconds_bucket{{{TASKS}}}[$__rate_interval]))"
                ),
                description="How long ended tasks took: tasks per duration bucket over time.",
            )
        )
        .with_panel(
            skeleton.link_to_explore("task_type", timeseries_panel(
                "Task duration P50 and P95 by task type", SECONDS,
                *[
                    query(
                        f"histogram_quantile({quantile}, sum by (task_type, le) (rate("
                        f"orchestrator_task_duration_seconds_bucket{{{TASKS}}}"
                        "[$__rate_interval])))",
                        f"{{{{task_type}}}} {name}",
                    )
                    for quantile, name in (("0.50", "p50"), ("0.95", "p95"))
                ],
                description="Quantiles of the duration of ended tasks, by task type.",
            ))
        )
        .with_panel(
            timeseries_panel(
                "Failures by origin and error type", PER_MINUTE,
                query(
                    "60 * sum by (origin, error_type) (rate("
                    "orchestrator_errors_total[$__rate_interval]))",
                    "{{origin}}: {{error_type}}",
                ),
                description=(
                    "Failures per minute of tasks, workflow runs, steps and tool calls, by error "
                    "type (all sources, workflows and task types)."
                ),
                stacked=True,
            )
        )
        .with_panel(
            bar_gauge_panel(
                "Failures over the range by error type", COUNT,
                query(
                    "sort_desc(sum by (error_type) (increase("
                    "orchestrator_errors_total[$__range])))",
                    "{{error_type}}", instant=True,
                ),
                description="Failures of every origin over the dashboard's range.",
                size=(12, 8),
            )
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The Workflows and tasks dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.WORKFLOWS_UID,
        title="Workflows and tasks",
        description=(
            "Workflow runs, tasks and steps: status, success, throughput, concurrency, "
            "durations, failures and retries."
        ),
        tags=["workflows", "tasks"],
        variables=["workflow", "task_type"],
    )
    return _tasks_row(_steps_row(_throughput_row(_now_row(builder))))
