"""Tables that read the exporter's HTTP API through the Infinity datasource.

Infinity (plugin `yesoreyeram-infinity-datasource`) requests a URL relative to its datasource's
base URL, takes the rows at `root_selector` in the JSON answer and, from each row, the columns
at their `selector`s. Both are GJSON paths, evaluated by the plugin's backend parser; we use
only plain keys and dots (`items`, `tokens.total`), which tests/test_dashboard_explore.py
evaluates the same way against a real exporter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common, dashboard

from grafana.panels import Linked

INFINITY_TYPE: Final = "yesoreyeram-infinity-datasource"
# The provisioned datasource (grafana/provisioning/datasources/datasources.yml): base URL the
# exporter service, a viewer token, requests allowed to the exporter only.
EXPORTER_API_UID: Final = "exporter-api"
EXPORTER_API: Final = dashboard.DataSourceRef(type_val=INFINITY_TYPE, uid=EXPORTER_API_UID)

# Grafana's display of a time field.
DATE: Final = "dateTimeAsIso"

ColumnType = Literal["string", "number", "timestamp_epoch_s"]


@dataclass(frozen=True)
class Column:
    """One column: the path of its value in a row, its title, its Infinity type and unit;
    `bar` draws numbers as bars, to compare rows at a glance."""

    selector: str
    text: str
    type: ColumnType = "string"
    unit: str | None = None
    bar: bool = False


@dataclass(frozen=True)
class ApiLink:
    """A data link on one column (by its title) to `url`, which may use ${__value.raw}."""

    column: str
    title: str
    url: str


class ApiQuery(cogvariants.Dataquery):
    """An Infinity target: GET `url` on the exporter, rows at `root_selector`, `columns`."""

    def __init__(self, url: str, root_selector: str, columns: Sequence[Column]) -> None:
        self.url = url
        self.root_selector = root_selector
        self.columns = columns

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "A",
            "datasource": EXPORTER_API.to_json(),
            "type": "json",
            "source": "url",
            # The backend parser: the query runs in Grafana's server, so the token never
            # reaches the browser, and the selectors are GJSON paths.
            "parser": "backend",
            "format": "table",
            "url": self.url,
            "url_options": {"method": "GET", "data": ""},
            "root_selector": self.root_selector,
            "columns": [
                {"selector": column.selector, "text": column.text, "type": column.type}
                for column in self.columns
            ],
            "filters": [],
        }


class _Target(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, query: ApiQuery) -> None:
        self._query = query

    def build(self) -> cogvariants.Dataquery:
        return self._query


def api_table(
    title: str,
    url: str,
    *,
    root_selector: str,
    columns: Sequence[Column],
    description: str,
    size: tuple[int, int] = (24, 8),
    links: Sequence[ApiLink] = (),
) -> cogbuilder.Builder[dashboard.Panel]:
    """A table of the rows at `root_selector` of GET `url` (a path under /api/v1/; an object
    answer is one row), its columns in the order given, each with its unit."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        # Plain numbers (counts, tokens); the other columns carry their own unit.
        .unit("short")
        .datasource(EXPORTER_API)
        .with_target(_Target(ApiQuery(url, root_selector, columns)))
        .span(size[0])
        .height(size[1])
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        # The plugin orders its fields by name: put them back in the order given.
        .with_transformation(
            dashboard.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {},
                    "indexByName": {column.text: index for index, column in enumerate(columns)},
                    "renameByName": {},
                },
            )
        )
    )
    for column in columns:
        unit = DATE if column.type == "timestamp_epoch_s" and column.unit is None else column.unit
        properties = [dashboard.DynamicConfigValue(id_val="unit", value=unit)] if unit else []
        if column.bar:
            properties.append(dashboard.DynamicConfigValue(
                id_val="custom.cellOptions", value={"type": "gauge", "mode": "basic"}))
        if properties:
            panel = panel.override_by_name(column.text, properties)
    linked: cogbuilder.Builder[dashboard.Panel] = panel
    for link in links:
        linked = Linked(linked, link.title, link.url, field=link.column)
    return linked
