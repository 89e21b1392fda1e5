"""What every dashboard shares: uids, tags, template variables, links and panel ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard

from grafana.panels import PROMETHEUS, Linked

FOLDER: Final = "Orchestrator"
TAG: Final = "orchestrator"

# Stable uids: alert `dashboard_url`s and the links between dashboards point at them.
FLEET_UID: Final = "orchestrator-fleet"
AGENTS_UID: Final = "orchestrator-agents"
WORKFLOWS_UID: Final = "orchestrator-workflows"
COSTS_UID: Final = "orchestrator-costs"
EXPORTER_UID: Final = "orchestrator-exporter"
EXPLORE_UID: Final = "orchestrator-explore"
HISTORY_UID: Final = "orchestrator-history"

# Explore shows one agent, task or run by these variables; any other dimension a panel shows
# (task_type, workflow) becomes Explore's `filter` of its lists, as `name=value`.
EXPLORE_IDS: Final = {"agent_id": "agent", "task_id": "task", "run_id": "run"}
EXPLORE_FILTERS: Final = {"task_type": "task type", "workflow": "workflow"}

# name -> (label, metric whose label values are offered, variables it narrows by). Each query
# narrows by the variables before it on the same dashboard, so the choices offered are the ones
# that have data under the current selection.
_VARIABLES: Final = {
    "source": ("Source", "orchestrator_agents_created_total", ()),
    "role": ("Role", "orchestrator_agents_created_total", ("source",)),
    "model": ("Model", "orchestrator_agents_created_total", ("source", "role")),
    "task_type": ("Task type", "orchestrator_tasks_submitted_total", ("source",)),
    "workflow": ("Workflow", "orchestrator_workflow_runs_started_total", ("source",)),
    "job": ("Exporter job", "orchestrator_exporter_build_info", ()),
}


def _datasource_variable() -> dashboard_builders.DatasourceVariable:
    return (
        dashboard_builders.DatasourceVariable("datasource")
        .label("Prometheus")
        .type("prometheus")
        .current(dashboard.VariableOption(selected=True, text="Prometheus", value="prometheus"))
    )


def _query_variable(name: str, before: Sequence[str]) -> dashboard_builders.QueryVariable:
    label, metric, narrowing = _VARIABLES[name]
    matchers = ", ".join(f'{other}=~"${other}"' for other in narrowing if other in before)
    selector = f"{metric}{{{matchers}}}" if matchers else metric
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(f"label_values({selector}, {name})")
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        # ".*" rather than a list of every value: it also matches the values that appear
        # after the dashboard loaded, and keeps the query short.
        .all_value(".*")
        .current(dashboard.VariableOption(selected=True, text="All", value="$__all"))
    )


def explore_url(variable: str, value: str, *, keep: Sequence[str] = ()) -> str:
    """The Explore dashboard with `variable` set to `value`, keeping the time range and the
    variables `keep` (Explore's own, for the links within it)."""
    kept = "".join(f"&${{{name}:queryparam}}" for name in keep)
    return f"/d/{EXPLORE_UID}?${{__url_time_range}}&var-{variable}={value}{kept}"


def link_to_explore(
    label: str, panel: cogbuilder.Builder[dashboard.Panel], *, column: str = ""
) -> Linked:
    """`panel` with a data link to Explore for the agent, task, run, task type or workflow its
    series carry as the label `label`, or its table shows in the column `column`."""
    value = "${__value.raw}" if column else f"${{__field.labels.{label}}}"
    if label in EXPLORE_IDS:
        title, url = f"Explore {EXPLORE_IDS[label]} {value}", explore_url(label, value)
    else:
        # `=` escaped: it is part of the filter's value in Explore's URL.
        title = f"Explore {EXPLORE_FILTERS[label]} {value}"
        url = explore_url("filter", f"{label}%3D{value}")
    return Linked(panel, title, url, field=column)


def new_dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    tags: Sequence[str],
    variables: Sequence[str],
    prometheus: bool = True,
) -> dashboard_builders.Dashboard:
    """A dashboard with the shared settings, links, `variables` and, if it reads `prometheus`,
    the datasource variable."""
    builder = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, *tags])
        # Editable so readers can explore a copy; the provider refuses saving over the file.
        .editable()
        .timezone("browser")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .timepicker(
            dashboard_builders.TimePicker().refresh_intervals(
                ["10s", "30s", "1m", "5m", "15m", "1h"]
            )
        )
        .link(
            dashboard_builders.DashboardLink("Orchestrator")
            .type(dashboard.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
            .tooltip("The other orchestrator dashboards")
        )
    )
    if prometheus:
        builder = builder.with_variable(_datasource_variable())
    for index, name in enumerate(variables):
        builder = builder.with_variable(_query_variable(name, variables[:index]))
    return builder


def finish(builder: dashboard_builders.Dashboard) -> dashboard.Dashboard:
    """Build the model and number the panels 1, 2, ... in layout order (ids must be unique)."""
    model = builder.build()
    number = 0
    for panel in model.panels or []:
        number += 1
        panel.id_val = number
        for nested in getattr(panel, "panels", None) or []:
            number += 1
            nested.id_val = number
    return model
