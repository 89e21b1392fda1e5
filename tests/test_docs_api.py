"""docs/api.md lists every endpoint the application serves, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from exporter.api import create_app
from exporter.service import build_exporter
from exporter.settings import Settings
from exporter.tokens import TokenRegistry

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_endpoint_table_is_the_application_s_routes(tmp_path):
    exporter = build_exporter(Settings(database_url=f"sqlite:///{tmp_path / 'l.db'}"),
                              registry=CollectorRegistry())
    app = create_app(exporter, tokens=TokenRegistry(fixed=[]))
    served = {(method, path) for path, item in app.openapi()["paths"].items()
              for method in item}
    documented = {(method.lower(), path) for method, path in re.findall(
        r"^\| `(GET|POST|PUT|DELETE) (\S+)` \|", DOCS.read_text(), re.MULTILINE)}
    assert documented == served
