"""docs/integrations.md names every receiver and every type each one claims, and the events
doc links it."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.dialects import DIALECT_NAMES, RECEIVERS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def receivers_table() -> dict[str, set[str]]:
    text = (DOCS / "integrations.md").read_text()
    section = text.split("## Receivers", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = set(re.findall(r"`([A-Za-z_.]+)`", cells[3]))
    return rows


def test_every_receiver_and_type_is_in_the_table():
    table = receivers_table()
    assert set(table) == set(DIALECT_NAMES) - {"canonical"}
    for receiver in RECEIVERS:
        assert table[receiver.name] == set(receiver.types), receiver.name


def test_the_events_doc_points_to_the_receivers():
    assert "integrations.md" in (DOCS / "events.md").read_text()
