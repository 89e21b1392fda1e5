"""Explore: the fleet's agents, tasks, runs and costs as the exporter's read API answers them,
and one agent, task or run in detail (docs/api.md, "Reading the fleet").

Every panel is an Infinity table over GET /api/v1/...; the other dashboards' agents, task types
and workflows link here with the variables set, and so do the ids in these tables.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard as dashboard_models

from grafana import skeleton
from grafana.infinity import ApiLink, Column, api_table
from grafana.panels import RATIO, SECONDS, TIME_AGO, TOKENS, USD, Conditional

# What the variables hold in the URLs: ids as path segments; the task status and the filter
# as query parameters, so that an empty filter adds none.
AGENT: Final = "${agent_id:percentencode}"
TASK: Final = "${task_id:percentencode}"
RUN: Final = "${run_id:percentencode}"
FILTER: Final = "${filter}"
STATUS: Final = "${status}"
# Costs over the dashboard's time range (the API rounds it to whole UTC days).
RANGE: Final = "from=${__from:date:seconds}&to=${__to:date:seconds}"

VARIABLES: Final = ("agent_id", "task_id", "run_id", "status", "filter")
TASK_STATUSES: Final = ("pending", "running", "completed", "failed", "cancelled")
# The API has no value for "any status" and an empty `status=` matches none, so every option
# is a query parameter: "any" repeats the list's sort, which changes nothing.
ANY_STATUS: Final = "sort=-submitted"


def _link_to(variable: str, column: str) -> ApiLink:
    """A link on `column` that shows the clicked id below, keeping the other variables."""
    noun = skeleton.EXPLORE_IDS[variable]
    keep = [name for name in VARIABLES if name != variable]
    url = skeleton.explore_url(variable, "${__value.raw}", keep=keep)
    return ApiLink(column, f"Show {noun} ${{__value.raw}}", url)


AGENT_LINK: Final = _link_to("agent_id", "Agent")
TASK_LINK: Final = _link_to("task_id", "Task")
RUN_LINK: Final = _link_to("run_id", "Run")

COST: Final = Column("cost_usd", "Cost", "number", USD)
CONTEXT: Final = Column("context_fill", "Context", "number", RATIO)
DURATION: Final = Column("duration_seconds", "Duration", "number", SECONDS)
TOKEN_COLUMNS: Final = (
    Column("tokens.input", "Input tokens", "number", TOKENS),
    Column("tokens.output", "Output tokens", "number", TOKENS),
    Column("tokens.cache_read", "Cache-read tokens", "number", TOKENS),
    Column("tokens.cache_creation", "Cache-write tokens", "number", TOKENS),
)


def _textbox(name: str, label: str, description: str) -> dashboard_builders.TextBoxVariable:
    return (
        dashboard_builders.TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value("")
        .current(dashboard_models.VariableOption(selected=True, text="", value=""))
    )


def _status_variable() -> dashboard_builders.CustomVariable:
    choices = [("any", ANY_STATUS)] + [(status, f"status={status}") for status in TASK_STATUSES]
    options = [
        dashboard_models.VariableOption(selected=index == 0, text=text, value=value)
        for index, (text, value) in enumerate(choices)
    ]
    return (
        dashboard_builders.CustomVariable("status")
        .label("Task status")
        .description("The tasks listed: of any status, or of one.")
        .values(", ".join(f"{text} : {value}" for text, value in choices))
        .options(options)
        .current(options[0])
    )


def _variables(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_variable(_textbox("agent_id", "Agent", "The agent shown below."))
        .with_variable(_textbox("task_id", "Task", "The task whose agents are shown below."))
        .with_variable(_textbox("run_id", "Run", "The workflow run whose steps are shown below."))
        .with_variable(_status_variable())
        .with_variable(
            _textbox(
                "filter", "Filter",
                "Query parameters of the API added to the lists and costs, such as "
                "workflow=release or task_type=bugfix&role=BUILDER; each applies those it knows.",
            )
        )
    )


def _fleet_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("Fleet"))
        .with_panel(
            api_table(
                "Live agents", f"/api/v1/agents?live=true&sort=-cost&limit=100&{FILTER}",
                root_selector="items",
                columns=(
                    Column("agent_id", "Agent"), Column("role", "Role"), Column("model", "Model"),
                    Column("status", "Status"), Column("task_id", "Task"), COST, CONTEXT,
                    Column("last_activity", "Last activity", "timestamp_epoch_s", TIME_AGO),
                ),
                description=(
                    "The 100 costliest agents not ended and not deleted: role, model, status, "
                    "task, cost so far, context-window fill and last event. Click an agent or a "
                    "task to show it below."
                ),
                size=(24, 9), links=(AGENT_LINK, TASK_LINK),
            )
        )
        .with_panel(
            api_table(
                "Tasks", f"/api/v1/tasks?sort=-submitted&limit=100&{STATUS}&{FILTER}",
                root_selector="items",
                columns=(
                    Column("task_id", "Task"), Column("task_type", "Task type"),
                    Column("status", "Status"), Column("analyst", "ANALYST"), COST,
                    Column("submitted_at", "Submitted", "timestamp_epoch_s"), DURATION,
                    Column("error", "Error"),
                ),
                description=(
                    "The 100 tasks submitted last, of the chosen status: type, ANALYST included "
                    "or not, cost, duration and error. Click a task to show its agents below."
                ),
                size=(12, 9), links=(TASK_LINK,),
            )
        )
        .with_panel(
            api_table(
                "Workflow runs", f"/api/v1/runs?sort=-started&limit=100&{FILTER}",
                root_selector="items",
                columns=(
                    Column("run_id", "Run"), Column("workflow", "Workflow"),
                    Column("status", "Status"),
                    Column("started_at", "Started", "timestamp_epoch_s"),
                    Column("ended_at", "Ended", "timestamp_epoch_s"), DURATION,
                ),
                description=(
                    "The 100 workflow runs started last: workflow, status, start, end and "
                    "duration. Click a run to show its steps below."
                ),
                size=(12, 9), links=(RUN_LINK,),
            )
        )
    )


def _costs_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    builder = builder.with_row(dashboard_builders.Row("Costs over the range"))
    for by, title in (("role", "Role"), ("model", "Model")):
        builder = builder.with_panel(
            api_table(
                f"Costs by {by}", f"/api/v1/costs?group_by={by}&{RANGE}&{FILTER}",
                root_selector="items",
                columns=(Column(by, title), Column("cost_usd", "Cost", "number", USD, bar=True),
                         *TOKEN_COLUMNS),
                description=(
                    f"Cost and tokens by {by} over the dashboard's time range in whole UTC days, "
                    "the ledger's sums (as budgets count them), costliest first."
                ),
                size=(12, 7),
            )
        )
    return builder


def _agent_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return (
        builder.with_row(dashboard_builders.Row("One agent"))
        .with_panel(
            Conditional(
                api_table(
                    "Agent", f"/api/v1/agents/{AGENT}", root_selector="",
                    columns=(
                        Column("agent_id", "Agent"), Column("role", "Role"),
                        Column("model", "Model"), Column("status", "Status"),
                        Column("task_id", "Task"), Column("task_type", "Task type"),
                        Column("workflow", "Workflow"), COST,
                        Column("tokens.total", "Tokens", "number", TOKENS), CONTEXT,
                        Column("context_limit_tokens", "Context window", "number", TOKENS),
                        Column("created_at", "Created", "timestamp_epoch_s"),
                        Column("last_activity", "Last activity", "timestamp_epoch_s", TIME_AGO),
                    ),
                    description=(
                        "The agent of the variable agent_id: role, model, status, its task, "
                        "cost and tokens so far, context-window fill and size, creation and "
                        "last event."
                    ),
                    size=(24, 4), links=(TASK_LINK,),
                ),
                "Empty until an agent is chosen: click one in a table, or follow a link from "
                "another dashboard.",
            )
        )
        .with_panel(
            Conditional(
                api_table(
                    "Tool calls of the agent", f"/api/v1/agents/{AGENT}",
                    root_selector="tool_calls",
                    columns=(Column("tool", "Tool"), Column("outcome", "Outcome"),
                             Column("count", "Calls", "number", bar=True)),
                    description="The agent's tool calls by tool and outcome.",
                    size=(12, 8),
                ),
                "Empty until an agent is chosen, and while it has called no tool.",
            )
        )
        .with_panel(
            Conditional(
                api_table(
                    "Top files of the agent", f"/api/v1/agents/{AGENT}/files",
                    root_selector="items",
                    columns=(Column("path", "File"),
                             Column("read", "Read", "number", bar=True),
                             Column("written", "Written", "number", bar=True)),
                    description=(
                        "The files the agent read and wrote, most used first: its Read, Edit "
                        "and Write calls' file_path and its orchestrator's reports of files "
                        "read and written (GET /api/v1/agents/{id}/files)."
                    ),
                    size=(12, 8),
                ),
                "Empty until an agent is chosen, and while it has named no file.",
            )
        )
    )


def _task_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return builder.with_row(dashboard_builders.Row("One task")).with_panel(
        Conditional(
            api_table(
                "Agents of the task and their cost", f"/api/v1/tasks/{TASK}",
                root_selector="agents",
                columns=(
                    Column("agent_id", "Agent"), Column("role", "Role"), Column("model", "Model"),
                    Column("status", "Status"),
                    Column("cost_usd", "Cost", "number", USD, bar=True),
                    Column("tokens.total", "Tokens", "number", TOKENS), CONTEXT,
                ),
                description=(
                    "The agents of the task of the variable task_id, each with its cost and "
                    "tokens. Click an agent to show it above."
                ),
                size=(24, 7), links=(AGENT_LINK,),
            ),
            "Empty until a task is chosen, and while the task has no agent.",
        )
    )


def _run_row(builder: dashboard_builders.Dashboard) -> dashboard_builders.Dashboard:
    return builder.with_row(dashboard_builders.Row("One run")).with_panel(
        Conditional(
            api_table(
                "Steps of the run", f"/api/v1/runs/{RUN}", root_selector="steps",
                columns=(
                    Column("step", "Step"), Column("status", "Status"),
                    Column("agent", "Agent role"), Column("agent_id", "Agent"),
                    Column("started_at", "Started", "timestamp_epoch_s"),
                    Column("ended_at", "Ended", "timestamp_epoch_s"),
                    Column("duration_seconds", "Duration", "number", SECONDS, bar=True),
                    Column("retries", "Retries", "number"),
                ),
                description=(
                    "The timeline of the run of the variable run_id: each step in order of "
                    "start, with its status, agent, start, end, duration and retries. Click an "
                    "agent to show it above."
                ),
                size=(24, 7), links=(AGENT_LINK,),
            ),
            "Empty until a run is chosen, and while the run has no step.",
        )
    )


def dashboard() -> dashboard_builders.Dashboard:
    """The Explore dashboard."""
    builder = skeleton.new_dashboard(
        uid=skeleton.EXPLORE_UID,
        title="Explore",
        description=(
            "The fleet as the exporter's read API answers it: live agents, tasks, runs and "
            "costs, and one agent, task or run in detail."
        ),
        tags=["explore"],
        variables=[],
        prometheus=False,
    )
    rows = (_fleet_row, _costs_row, _agent_row, _task_row, _run_row)
    builder = _variables(builder)
    for row in rows:
        builder = row(builder)
    return builder
