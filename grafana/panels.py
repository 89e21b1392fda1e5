"""Panel and query helpers: every panel gets a title, a description, a unit and the datasource.

The views call these instead of the SDK builders directly, so the conventions that the tests
check (a unit on every panel, queries bound to the `$datasource` variable, conditional panels
tagged) are kept in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import (
    alertgroups,
    bargauge,
    gauge,
    heatmap,
    piechart,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import piechart as piechart_models
from grafana_foundation_sdk.models import prometheus as prometheus_models

PROMETHEUS = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")
ALERTMANAGER_UID = "alertmanager"
# The alert-groups panel names its Alertmanager by datasource name, not uid.
ALERTMANAGER_NAME = "Alertmanager"
ALERTMANAGER = dashboard.DataSourceRef(type_val="alertmanager", uid=ALERTMANAGER_UID)

# A panel whose queries may rightly return nothing (no alert firing, no rejected event) carries
# this tag; the live test requires data from every other query.
CONDITIONAL_TAG = "conditional"

# Units: Grafana ids where one exists; any other string is shown as a suffix.
USD = "currencyUSD"
USD_PER_HOUR = "USD/h"
TOKENS = "short"
TOKENS_PER_SECOND = "tokens/s"
PER_MINUTE = "/min"
PER_DAY = "/day"
COUNT = "short"
RATIO = "percentunit"
SECONDS = "s"
BYTES = "bytes"
EVENTS_PER_SECOND = "events/s"
ERRORS_PER_SECOND = "errors/s"
VALUES_PER_SECOND = "values/s"
TIME_AGO = "dateTimeFromNow"

GREEN_ORANGE_RED = ((None, "green"), (0.8, "orange"), (1.0, "red"))

# Override properties: a dashed line (bands, limits, projections).
DASHED = [dashboard.DynamicConfigValue(id_val="custom.lineStyle",
                                       value={"fill": "dash", "dash": [10, 10]})]


def right_axis(unit: str) -> list[dashboard.DynamicConfigValue]:
    """Override properties that draw a series in its own unit on a right-hand axis."""
    return [
        dashboard.DynamicConfigValue(id_val="unit", value=unit),
        dashboard.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
    ]


class _PanelBuilder(Protocol):
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def datasource(self, datasource: dashboard.DataSourceRef) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[prometheus_models.Dataquery]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def build(self) -> dashboard.Panel: ...


P = TypeVar("P", bound=_PanelBuilder)


def query(expr: str, legend: str = "", *, instant: bool = False) -> prometheus_builders.Dataquery:
    """A PromQL target; instant queries are for stats, gauges, tables and top-N bars."""
    target = prometheus_builders.Dataquery().expr(expr).datasource(PROMETHEUS)
    if legend:
        target = target.legend_format(legend)
    return target.instant() if instant else target.range()


def table_query(expr: str) -> prometheus_builders.Dataquery:
    """An instant query in table format: one row per series, one column per label."""
    return query(expr, instant=True).format(prometheus_models.PromQueryFormat.TABLE)


def heatmap_query(expr: str) -> prometheus_builders.Dataquery:
    """Histogram buckets (`sum by (le)`) read as a heatmap."""
    return query(expr, "{{le}}").format(prometheus_models.PromQueryFormat.HEATMAP)


def _finish(
    panel: P,
    title: str,
    description: str,
    unit: str,
    targets: Sequence[prometheus_builders.Dataquery],
    size: tuple[int, int],
) -> P:
    panel = (
        panel.title(title)
        .description(description)
        .unit(unit)
        .datasource(PROMETHEUS)
        .span(size[0])
        .height(size[1])
    )
    for index, target in enumerate(targets):
        panel = panel.with_target(target.ref_id(chr(ord("A") + index)))
    return panel


def _thresholds(
    steps: Sequence[tuple[float | None, str]],
) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard.ThresholdsMode.ABSOLUTE)
        .steps([dashboard.Threshold(value=value, color=color) for value, color in steps])
    )


def stat_panel(
    title: str,
    unit: str,
    *targets: prometheus_builders.Dataquery,
    description: str,
    size: tuple[int, int] = (4, 4),
    time_from: str = "",
    thresholds: Sequence[tuple[float | None, str]] = ((None, "blue"),),
    no_value: str = "0",
) -> stat.Panel:
    """A big number; shows `no_value` (0), not "No data", when the series does not exist yet."""
    panel = (
        stat.Panel()
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.VALUE)
        .text_mode(common.BigValueTextMode.AUTO)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .no_value(no_value)
        .thresholds(_thresholds(thresholds))
    )
    if time_from:
        panel = panel.time_from(time_from)
    return _finish(panel, title, description, unit, targets, size)


def timeseries_panel(
    title: str,
    unit: str,
    *targets: prometheus_builders.Dataquery,
    description: str,
    size: tuple[int, int] = (12, 8),
    stacked: bool = False,
    legend_calcs: Sequence[str] = ("mean", "max", "lastNotNull"),
    interval: str = "",
) -> timeseries.Panel:
    """Lines over time with a table legend (mean, max and last by default); `interval` is the
    smallest step Grafana queries with (for series recorded once an hour or a day)."""
    panel = (
        timeseries.Panel()
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(list(legend_calcs))
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if interval:
        panel = panel.interval(interval)
    return _finish(panel, title, description, unit, targets, size)


def gauge_panel(
    title: str,
    unit: str,
    *targets: prometheus_builders.Dataquery,
    description: str,
    size: tuple[int, int] = (12, 6),
) -> gauge.Panel:
    """Shares from 0 to 1 (100 %): orange from 80 %, red from 100 %."""
    panel = (
        gauge.Panel()
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .show_threshold_markers(True)
        .min(0)
        .max(1)
        .thresholds(_thresholds(GREEN_ORANGE_RED))
    )
    return _finish(panel, title, description, unit, targets, size)


def bar_gauge_panel(
    title: str,
    unit: str,
    *targets: prometheus_builders.Dataquery,
    description: str,
    size: tuple[int, int] = (8, 8),
) -> bargauge.Panel:
    """Horizontal bars, one per series: the shape of a top-N list."""
    panel = (
        bargauge.Panel()
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .min(0)
        .thresholds(_thresholds(((None, "blue"),)))
    )
    return _finish(panel, title, description, unit, targets, size)


def pie_panel(
    title: str,
    unit: str,
    *targets: prometheus_builders.Dataquery,
    description: str,
    size: tuple[int, int] = (6, 8),
) -> piechart.Panel:
    """A donut of the shares of a whole, with values and percentages in the legend."""
    panel = (
        piechart.Panel()
        .pie_type(piechart_models.PieChartType.DONUT)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .legend(
            piechart.PieChartLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
            .values([piechart_models.PieChartLegendValues.VALUE,
                     piechart_models.PieChartLegendValues.PERCENT])
        )
    )
    return _finish(panel, title, description, unit, targets, size)


def table_panel(
    title: str,
    unit: str,
    *targets: prometheus_builders.Dataquery,
    description: str,
    size: tuple[int, int] = (24, 8),
    columns: Sequence[tuple[str, str, str | None]] = (),
    hidden: Sequence[str] = ("Time", "__name__", "job", "instance"),
    sort_by: str = "",
) -> table.Panel:
    """Instant table queries merged on their labels into one row per series.

    `columns` are (field, display name, unit): labels to rename (unit None), and the value
    columns that Grafana calls "Value #A", "Value #B" (one per query) or just "Value" (a single
    query).
    """
    panel = (
        table.Panel()
        .with_transformation(dashboard.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {name: True for name in hidden},
                    "indexByName": {},
                    "renameByName": {field: name for field, name, _ in columns},
                },
            )
        )
    )
    for _, name, column_unit in columns:
        if column_unit is None:
            continue
        panel = panel.override_by_name(
            name, [dashboard.DynamicConfigValue(id_val="unit", value=column_unit)]
        )
    if sort_by:
        panel = panel.sort_by([common_builders.TableSortByFieldState().display_name(sort_by)
                               .desc(True)])
    return _finish(panel, title, description, unit, targets, size)


def heatmap_panel(
    title: str,
    unit: str,
    target: prometheus_builders.Dataquery,
    *,
    description: str,
    size: tuple[int, int] = (12, 8),
) -> heatmap.Panel:
    """Histogram buckets over time; `unit` is the unit of the buckets (the y axis)."""
    panel = (
        heatmap.Panel()
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(unit))
        .cell_values(heatmap.CellValues().unit(COUNT))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
        .show_value(common.VisibilityMode.NEVER)
    )
    return _finish(panel, title, description, unit, [target], size)


def matrix_panel(
    title: str,
    unit: str,
    target: prometheus_builders.Dataquery,
    *,
    rows: str,
    columns: str,
    row_names: Mapping[str, str],
    description: str,
    size: tuple[int, int] = (24, 9),
) -> table.Panel:
    """A heatmap of two labels: the series of an instant table query laid out with a row per
    value of the label `rows` (shown as `row_names` says) and a column per value of `columns`,
    each cell coloured by its value from green to red over the whole matrix."""
    corner = f"{rows}\\{columns}"  # the name Grafana gives the column of row labels
    mappings = {value: {"text": name, "index": index}
                for index, (value, name) in enumerate(row_names.items())}
    panel = (
        table.Panel()
        .show_header(True)
        .with_transformation(dashboard.DataTransformerConfig(id_val="merge", options={}))
        # The matrix takes rows and columns in the order they first appear: sorted here.
        .with_transformation(dashboard.DataTransformerConfig(
            id_val="sortBy", options={"fields": {}, "sort": [{"field": columns}]}))
        .with_transformation(dashboard.DataTransformerConfig(
            id_val="groupingToMatrix",
            options={"columnField": columns, "rowField": rows, "valueField": "Value",
                     "emptyValue": "null"}))
        .with_transformation(dashboard.DataTransformerConfig(
            id_val="sortBy", options={"fields": {}, "sort": [{"field": corner}]}))
        .color_scheme(dashboard_builders.FieldColor().mode(
            dashboard.FieldColorModeId.CONTINUOUS_GR_YL_RD))
        .min(0)
        .override_by_field_type("number", [dashboard.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"})])
        .override_by_name(corner, [
            dashboard.DynamicConfigValue(id_val="displayName", value=rows.capitalize()),
            dashboard.DynamicConfigValue(id_val="mappings",
                                         value=[{"type": "value", "options": mappings}]),
        ])
    )
    return _finish(panel, title, description, unit, [target], size)


def alert_groups_panel(title: str, *, description: str, size: tuple[int, int]) -> alertgroups.Panel:
    """Alerts as Alertmanager groups them, read through the Alertmanager datasource."""
    return (
        alertgroups.Panel()
        .title(title)
        .description(description)
        .unit(COUNT)
        .datasource(ALERTMANAGER)
        .alertmanager(ALERTMANAGER_NAME)
        .expand_all(True)
        .labels("")
        .span(size[0])
        .height(size[1])
    )


class Conditional(cogbuilder.Builder[dashboard.Panel]):
    """A panel whose queries may rightly be empty; `reason` tells the reader when."""

    def __init__(self, panel: cogbuilder.Builder[dashboard.Panel], reason: str) -> None:
        self._panel = panel
        self._reason = reason

    def build(self) -> dashboard.Panel:
        model = self._panel.build()
        model.tags = [CONDITIONAL_TAG]
        model.description = f"{model.description} {self._reason}".strip()
        return model


class _DataLink(dashboard.DashboardLink):
    """A data link. The SDK types a field's links as dashboard links; of their keys a data link
    has only the title and the url, so the others (tags, asDropdown, ...) are left out."""

    def to_json(self) -> dict[str, object]:
        return {"title": self.title, "url": self.url}


class Linked(cogbuilder.Builder[dashboard.Panel]):
    """A panel whose values link to `url`: every field's, or only the field (a table column,
    by its display name) `field`'s. `title` and `url` may hold Grafana's data-link variables,
    such as ${__field.labels.agent_id} (a series' label) or ${__value.raw} (a cell)."""

    def __init__(
        self, panel: cogbuilder.Builder[dashboard.Panel], title: str, url: str, *, field: str = ""
    ) -> None:
        self._panel = panel
        self._link = _DataLink(title=title, url=url)
        self._field = field

    def build(self) -> dashboard.Panel:
        model = self._panel.build()
        config = model.field_config = model.field_config or dashboard.FieldConfigSource()
        if self._field:
            override = dashboard.DashboardFieldConfigSourceOverrides(
                matcher=dashboard.MatcherConfig(id_val="byName", options=self._field),
                properties=[dashboard.DynamicConfigValue(id_val="links", value=[self._link])],
            )
            config.overrides = [*(config.overrides or []), override]
        else:
            defaults = config.defaults = config.defaults or dashboard.FieldConfig()
            defaults.links = [*(defaults.links or []), self._link]
        return model


def links_to(title: str, uid: str) -> list[cogbuilder.Builder[dashboard.DashboardLink]]:
    """Panel links to another dashboard that keep the time range and the variables."""
    return [
        dashboard_builders.DashboardLink(title)
        .type(dashboard.DashboardLinkType.LINK)
        .url(f"/d/{uid}?${{__url_time_range}}&${{__all_variables}}")
    ]
