"""docs/configuration.md lists every setting, under its environment variable."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.settings import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_every_setting_is_documented_and_nothing_else():
    documented = set(re.findall(r"^\| `(EXPORTER_[A-Z_]+)` \|", DOC.read_text(), re.MULTILINE))
    expected = {f"EXPORTER_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected
