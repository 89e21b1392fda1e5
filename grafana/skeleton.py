"""What every dashboard shares: uids, tags, template variables, links and panel ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import dashboard

from grafana.panels import PROMETHEUS

FOLDER: Final = "Orchestrator"
TAG: Final = "orchestrator"

# Stable uids: alert `dashboard_url`s and the links between dashboards point at them.
FLEET_UID: Final = "orchestrator-fleet"
AGENTS_UID: Final = "orchestrator-agents"
WORKFLOWS_UID: Final = "orchestrator-workflows"
COSTS_UID: Final = "orchestrator-costs"
EXPORTER_UID: Final = "orchestrator-exporter"

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


def new_dashboard(
    *, uid: str, title: str, description: str, tags: Sequence[str], variables: Sequence[str]
) -> dashboard_builders.Dashboard:
    """A dashboard with the shared settings, the datasource variable, `variables` and links."""
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
        .with_variable(_datasource_variable())
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
