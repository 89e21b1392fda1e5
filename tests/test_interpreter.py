"""exporter/interpreter.py: what the serving process sets in CPython once start-up is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.exporter import repository_root

from exporter.interpreter import GC_YOUNG_THRESHOLD
from exporter.settings import Settings

# In a fresh interpreter, since freezing and the switch interval would outlive the test.
PROGRAM = """
import gc, json, sys
from exporter.interpreter import settle

alive = [[index] for index in range(1000)]  # loaded at start-up: containers the GC tracks
before = {"interval": sys.getswitchinterval(), "frozen": gc.get_freeze_count(),
          "young": gc.get_threshold()[0]}
settle(float(sys.argv[1]))
after = {"interval": sys.getswitchinterval(), "frozen": gc.get_freeze_count(),
         "young": gc.get_threshold()[0]}
print(json.dumps({"before": before, "after": after}))
"""


def _settle(milliseconds: float) -> dict[str, dict[str, float]]:
    environment = dict(os.environ, PYTHONPATH=str(repository_root()))
    result = subprocess.run([sys.executable, "-c", PROGRAM, str(milliseconds)], env=environment,
                            capture_output=True, text=True, timeout=60, check=True)
    answer: dict[str, dict[str, float]] = json.loads(result.stdout)
    return answer


def test_settle_hands_the_gil_over_sooner_and_freezes_what_start_up_loaded() -> None:
    default = Settings.model_fields["gil_switch_interval_ms"].default
    answer = _settle(default)
    before, after = answer["before"], answer["after"]
    assert before["interval"] == 0.005  # CPython's own
    assert after["interval"] == default / 1000 < before["interval"]
    assert before["frozen"] == 0 and after["frozen"] >= 1000
    assert before["young"] == 700 and after["young"] == GC_YOUNG_THRESHOLD


def test_the_switch_interval_is_the_setting() -> None:
    assert _settle(2.5)["after"]["interval"] == 0.0025
