"""Agents: every live agent, context-window pressure, stuck agents, tool calls, and what Claude
Code sessions alone report (lines of code, commits, pull requests, active time, edit decisions)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dashboard_builders

from grafana import skeleton
from grafana.panels import (
    COUNT,
    PER_MINUTE,
    RATIO,
    SECONDS,
    TIME_AGO,
    TOKENS,
    USD,
    Conditional,
    bar_gauge_panel,
    query,
    stat_panel,
    table_panel,
    table_query,
    timeseries_panel,
)

# Per-agent gauges carry source, agent_id and role; orchestrator_agent_info adds model and
# status. Joining on the info series filters by model and gives every query the same labels,
# which the table needs to merge them into one row per agent.
AGENT = 'source=~"$source", role=~"$role"'
INFO = f'orchestrator_agent_info{{{AGENT}, model=~"$model"}}'
JOIN = f"* on (source, agent_id) group_left (model, status) {INFO}"
ONLY = f"and on (source, agent_id) {INFO}"
CONTEXT = (
    f"(orchestrator_agent_context_tokens{{{AGENT}}}"
    f" / (orchestrator_agent_context_limit_tokens{{{AGENT}}} > 0))"
)
IDLE = f"(time() - orchestrator_agent_last_activity_timestamp_seconds{{{AGENT}}})"
RUNNING_INFO = f'orchestrator_agent_info{{{AGENT}, model=~"$model", status="running"}}'
RUNNING = f"and on (source, agent_id) {RUNNING_INFO}"
# The stuck-agent alert's threshold: a running agent silent for 10 minutes.
STUCK_SECONDS = 600
CONTEXT_PRESSURE = 0.8
TOOLS = 'source=~"$source", role=~"$role"'
# Claude Code's own counters carry source and role only (no agent, no model: docs/metrics.md).
CLAUDE_CODE = 'source=~"$source", role=~"$role"'


def _summary_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Live agents"))
        .with_panel(
            stat_panel("Live agents", COUNT, query(f"count({INFO})", instant=True),
                       description="Agents not ended and not deleted.", size=(6, 4))
        )
        .with_panel(
            stat_panel(
                "Running", COUNT,
                query(f"count({RUNNING_INFO})", instant=True),
                description="Live agents whose status is running.", size=(6, 4),
            )
        )
        .with_panel(
            Conditional(
                stat_panel(
                    "Context above 80 %", COUNT,
                    query(f"count(({CONTEXT} {ONLY}) > {CONTEXT_PRESSURE})", instant=True),
                    description="Live agents whose context window is more than 80 % full.",
                    size=(6, 4), thresholds=((None, "green"), (1, "orange")),
                ),
                "Empty, shown as 0, while no agent is above 80 %.",
            )
        )
        .with_panel(
            Conditional(
                stat_panel(
                    "Stuck agents", COUNT,
                    query(f"count(({IDLE} {RUNNING}) > {STUCK_SECONDS})", instant=True),
                    description="Running agents without any event for 10 minutes.",
                    size=(6, 4), thresholds=((None, "green"), (1, "red")),
                ),
                "Empty, shown as 0, while no agent is stuck.",
            )
        )
        .with_panel(
            skeleton.link_to_explore("agent_id", table_panel(
                "Every live agent", COUNT,
                table_query(INFO),
                table_query(f"orchestrator_agent_cost_usd{{{AGENT}}} {JOIN}"),
                table_query(f"orchestrator_agent_tokens{{{AGENT}}} {JOIN}"),
                table_query(f"{CONTEXT} {JOIN}"),
                table_query(
                    f"1000 * orchestrator_agent_last_activity_timestamp_seconds{{{AGENT}}} {JOIN}"
                ),
                description=(
                    "One row per live agent: role, model, status, cost and tokens so far, "
                    "context-window fill and the time of its last event."
                ),
                size=(24, 10),
                columns=(
                    ("agent_id", "Agent", None),
                    ("Value #B", "Cost", USD),
                    ("Value #C", "Tokens", TOKENS),
                    ("Value #D", "Context", RATIO),
                    ("Value #E", "Last activity", TIME_AGO),
                ),
                hidden=("Time", "__name__", "job", "instance", "Value #A"),
                sort_by="Cost",
            ), column="Agent")
        )
    )


def _context_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Context window and stuck agents"))
        .with_panel(
            skeleton.link_to_explore("agent_id", timeseries_panel(
                "Context-window fill, top 10 agents", RATIO,
                query(f"topk(10, {CONTEXT} {ONLY})", "{{agent_id}} ({{role}})"),
                description="Share of the context window in use, for the ten fullest agents.",
            ))
        )
        .with_panel(
            skeleton.link_to_explore("agent_id", bar_gauge_panel(
                "Context-window fill now", RATIO,
                query(f"topk(10, {CONTEXT} {ONLY})", "{{agent_id}} ({{role}})", instant=True),
                description="The ten fullest context windows; orange above 80 %.",
                size=(12, 8),
            ))
        )
        .with_panel(
            skeleton.link_to_explore("agent_id", timeseries_panel(
                "Time since last event, running agents", SECONDS,
                query(f"topk(10, {IDLE} {RUNNING})", "{{agent_id}} ({{role}})"),
                description=(
                    "Seconds since the last event of the ten quietest running agents; an agent "
                    "above 10 minutes counts as stuck."
                ),
            ))
        )
        .with_panel(
            skeleton.link_to_explore("agent_id", Conditional(
                table_panel(
                    "Running agents silent for 10 minutes", SECONDS,
                    table_query(f"{IDLE} {JOIN} > {STUCK_SECONDS} {RUNNING}"),
                    description="Running agents without any event for more than 10 minutes.",
                    size=(12, 8),
                    columns=(("agent_id", "Agent", None), ("Value", "Silent for", SECONDS)),
                    sort_by="Silent for",
                ),
                "Empty while no agent is stuck.",
            ), column="Agent")
        )
    )


def _tools_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    calls = f"sum by (tool) (rate(orchestrator_tool_calls_total{{{TOOLS}}}[$__rate_interval]))"
    errors = (
        "sum by (tool) (rate("
        f'orchestrator_tool_calls_total{{{TOOLS}, outcome="error"}}[$__rate_interval]))'
    )
    return (
        builder.with_row(dashboard_builders.Row("Tool calls"))
        .with_panel(
            timeseries_panel(
                "Tool calls by tool", PER_MINUTE, query(f"60 * {calls}", "{{tool}}"),
                description="Tool calls per minute, by tool.", stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tool error ratio by tool", RATIO,
                # A tool without errors has no error series: count it as 0, not as missing.
                query(f"({errors} or {calls} * 0) / {calls}", "{{tool}}"),
                description="Share of tool calls that ended in an error, by tool.",
            )
        )
        .with_panel(
            timeseries_panel(
                "Tool call duration P95 by tool", SECONDS,
                query(
                    "histogram_quantile(0.95, sum by (tool, le) (rate("
                    f"orchestrator_tool_call_duration_seconds_bucket{{{TOOLS}}}"
                    "[$__rate_interval])))",
                    "{{tool}}",
                ),
                description="95th percentile of tool call duration, by tool.",
            )
        )
        .with_panel(
            bar_gauge_panel(
                "Tool calls over the range by outcome", COUNT,
                query(
                    "sort_desc(sum by (tool, outcome) (increase("
                    f"orchestrator_tool_calls_total{{{TOOLS}}}[$__range])))",
                    "{{tool}} {{outcome}}", instant=True,
                ),
                description="Tool calls over the dashboard's time range, by tool and outcome.",
                size=(12, 8),
            )
        )
    )


def _lifecycle_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Agent lifecycle"))
        .with_panel(
            timeseries_panel(
                "Agents by status", COUNT,
                query(f"sum by (status) (orchestrator_agents{{{AGENT}}})", "{{status}}"),
                description="Agents not deleted, by status.", stacked=True,
            )
        )
        .with_panel(
            timeseries_panel(
                "Agents created by model", PER_MINUTE,
                query(
                    "60 * sum by (model) (rate(orchestrator_agents_created_total"
                    f'{{{AGENT}, model=~"$model"}}[$__rate_interval]))',
                    "{{model}}",
                ),
                description="Agents created per minute, by model.", stacked=True,
            )
        )
    )


def _claude_code_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    decisions = "orchestrator_claude_code_edit_decisions_total"
    edits = f"sum by (tool) (rate({decisions}{{{CLAUDE_CODE}}}[$__rate_interval]))"
    accepted = (f'sum by (tool) (rate({decisions}{{{CLAUDE_CODE}, decision="accept"}}'
                "[$__rate_interval]))")
    return (
        builder.with_row(dashboard_builders.Row("Claude Code"))
        .with_panel(
            timeseries_panel(
                "Lines of code changed by role", PER_MINUTE,
                query(
                    "60 * sum by (role, type) (rate(orchestrator_claude_code_lines_of_code_total"
                    f"{{{CLAUDE_CODE}}}[$__rate_interval]))",
                    "{{role}} {{type}}",
                ),
                description=(
                    "Lines added and removed per minute, by role: Claude Code's "
                    "claude_code.lines_of_code.count, and any source's agent.activity."
                ),
            )
        )
        .with_panel(
            timeseries_panel(
                "Active time by role", COUNT,
                query(
                    "sum by (role, type) (rate("
                    f"orchestrator_claude_code_active_time_seconds_total{{{CLAUDE_CODE}}}"
                    "[$__rate_interval]))",
                    "{{role}} {{type}}",
                ),
                description=(
                    "Seconds of active time per second: how many Claude Code sessions were "
                    "active at once, on average; user is the person at the keyboard, cli "
                    "Claude Code working."
                ),
                stacked=True,
            )
        )
        .with_panel(
            bar_gauge_panel(
                "Commits and pull requests over the range by role", COUNT,
                query(
                    "sort_desc(sum by (role) (increase(orchestrator_claude_code_commits_total"
                    f"{{{CLAUDE_CODE}}}[$__range])))",
                    "{{role}} commits", instant=True,
                ),
                query(
                    "sort_desc(sum by (role) (increase("
                    f"orchestrator_claude_code_pull_requests_total{{{CLAUDE_CODE}}}"
                    "[$__range])))",
                    "{{role}} pull requests", instant=True,
                ),
                description=(
                    "Git commits made and pull requests opened by Claude Code sessions over "
                    "the dashboard's time range, by role."
                ),
            )
        )
        .with_panel(
            timeseries_panel(
                "Edit acceptance ratio by tool", RATIO,
                # A tool whose edits were all rejected has no accept series: 0, not missing.
                query(f"({accepted} or {edits} * 0) / {edits}", "{{tool}}"),
                description=(
                    "Share of Claude Code's permission decisions on editing tools (Edit, Write, "
                    "NotebookEdit) that accepted the edit, by tool."
                ),
                size=(8, 8),
            )
        )
        .with_panel(
            bar_gauge_panel(
                "Edit decisions over the range by role", COUNT,
                query(
                    f"sort_desc(sum by (role, decision) (increase({decisions}"
                    f"{{{CLAUDE_CODE}}}[$__range])))",
                    "{{role}} {{decision}}", instant=True,
                ),
                description=(
                    "Permission decisions on Claude Code's editing tools over the dashboard's "
                    "time range, by role and decision (accept, reject)."
                ),
            )
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The Agents dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.AGENTS_UID,
        title="Agents",
        description="Live agents, context-window pressure, stuck agents, tool calls and Claude "
                    "Code's own signals.",
        tags=["agents"],
        variables=["source", "role", "model"],
    )
    return _claude_code_row(_lifecycle_row(_tools_row(_context_row(_summary_row(builder)))))
