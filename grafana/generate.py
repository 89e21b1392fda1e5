"""Write the dashboards: `python -m grafana.generate [--output DIR]`.

The output is deterministic (sorted keys, no timestamps, panel ids in layout order), so a test
regenerates it and compares it byte for byte with the committed files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana import skeleton
from grafana.views import agents, costs, explore, exporter_health, fleet, history, workflows

DASHBOARDS_DIR: Final = Path(__file__).parent / "dashboards"

# File name -> the view that builds it. The home dashboard's file name is in
# GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH (docker-compose.yml).
VIEWS: Final[dict[str, Callable[[], dashboard_builders.Dashboard]]] = {
    "fleet-overview.json": fleet.dashboard,
    "agents.json": agents.dashboard,
    "workflows.json": workflows.dashboard,
    "costs.json": costs.dashboard,
    "history.json": history.dashboard,
    "exporter-health.json": exporter_health.dashboard,
    "explore.json": explore.dashboard,
}


def render(builder: dashboard_builders.Dashboard) -> str:
    """The dashboard as the JSON text Grafana provisions."""
    model = skeleton.finish(builder)
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(directory: Path) -> list[Path]:
    """Write every dashboard into `directory`; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, view in VIEWS.items():
        path = directory / name
        path.write_text(render(view()), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__)
    parser.add_argument("--output", type=Path, default=DASHBOARDS_DIR,
                        help="directory to write into (default: grafana/dashboards)")
    arguments = parser.parse_args(argv)
    for path in generate(arguments.output):
        print(path)


if __name__ == "__main__":
    main()
