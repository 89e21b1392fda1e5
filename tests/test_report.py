"""`orchestrator-exporter report` against a real exporter: its totals are those of /metrics, the
HTML renders in headless Chromium with its charts (DOM, screenshot, A4 PDF), untrusted text
stays text, and trends compare with the previous period."""

from __future__ import annotations

import csv
import datetime
import io
import os
import re
import struct
import subprocess
import sys
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from streams import mixed_stream
from support import ExporterFactory, ExporterProcess, parse_metrics, require_binary
from support.exporter import repository_root

from exporter.report import (
    CSV_COLUMNS,
    BudgetLine,
    CompletedTasks,
    Line,
    Period,
    Report,
    render_csv,
    render_markdown,
    report_period,
)
from exporter.report_html import render_html

AT = "2025-03-12"  # a Wednesday: its ISO week is 2025-03-10 to 2025-03-16
MORNING = datetime.datetime(2025, 3, 12, 9, tzinfo=datetime.UTC).timestamp()
DAY = 86_400
BUDGETS = """
budgets:
  - {name: fleet-weekly, limit_usd: 50, period: week}
  - {name: builders-daily, limit_usd: 5, period: day, scope: {role: BUILDER}}
"""
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> & | `x`'
# The exporter refuses `<` in ids; `+` is allowed, and starts a formula in a spreadsheet.
FORMULA_AGENT = "+cmd@evil"
BAR_BLUE = bytes((0x2B, 0x6C, 0xB0))  # --bar in exporter/report_html.py


def run_report(exporter: ExporterProcess, *arguments: str,
               token: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as cron runs it: a process of its own, no EXPORTER_* from this shell."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EXPORTER_")}
    env["PYTHONPATH"] = str(repository_root())
    argv = [sys.executable, "-m", "exporter", "report", "--url", exporter.url,
            "--token", token or exporter.token, *arguments]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                          check=False)


def report_file(exporter: ExporterProcess, path: Path, *arguments: str) -> str:
    done = run_report(exporter, *arguments, "--output", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    return path.read_text(encoding="utf-8")


def post(exporter: ExporterProcess, events: list[dict[str, Any]]) -> None:
    response = exporter.post_events(events)
    assert response.status_code == 200, response.text


def fleet_in_one_week(exporter: ExporterProcess) -> None:
    """The mixed stream on Wednesday morning, and a task whose description and agent are
    hostile (the costliest task, so it is in the report)."""
    for batch in mixed_stream(total=2_000, start=MORNING).batches:
        post(exporter, batch)
    post(exporter, [
        {"type": "task.submitted", "id": "hostile-1", "task_id": "task-hostile",
         "task_type": "feature", "description": HOSTILE, "timestamp": MORNING + 600},
        {"type": "agent.created", "id": "hostile-2", "agent_id": FORMULA_AGENT,
         "role": "BUILDER", "model": "claude-haiku-4-5", "task_id": "task-hostile",
         "timestamp": MORNING + 601},
        {"type": "agent.usage", "id": "hostile-3", "agent_id": FORMULA_AGENT,
         "cost_usd": 40.0, "timestamp": MORNING + 602},
    ])


def metric_costs(exporter: ExporterProcess) -> tuple[float, Counter[str]]:
    """orchestrator_cost_usd_total summed, and by role."""
    by_role: Counter[str] = Counter()
    for (name, labels), value in parse_metrics(exporter.metrics_text()).items():
        if name == "orchestrator_cost_usd_total":
            by_role[dict(labels)["role"]] += value
    return sum(by_role.values()), by_role


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def section(rows: list[dict[str, str]], name: str) -> dict[str, dict[str, str]]:
    return {row["key"]: row for row in rows if row["section"] == name}


def cents(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


# -- the totals ---------------------------------------------------------------------------------


def test_every_format_totals_what_metrics_counts(exporter_factory: ExporterFactory,
                                                 tmp_path: Path):
    exporter = exporter_factory(config=BUDGETS)
    fleet_in_one_week(exporter)
    total, by_role = metric_costs(exporter)
    week = ("--period", "week", "--at", AT)

    rows = csv_rows(report_file(exporter, tmp_path / "r.csv", *week, "--format", "csv"))
    assert section(rows, "report")["from"]["detail"] == "2025-03-10"
    assert section(rows, "report")["to"]["detail"] == "2025-03-17"
    assert float(section(rows, "total")["total"]["cost_usd"]) == pytest.approx(total, abs=1e-6)
    for dimension in ("role", "model", "task_type", "workflow", "day"):
        spent = sum(float(row["cost_usd"]) for row in section(rows, dimension).values())
        assert spent == pytest.approx(total, abs=1e-6), dimension
    assert {role: float(row["cost_usd"]) for role, row in section(rows, "role").items()} \
        == pytest.approx(dict(by_role), abs=1e-6)
    assert len(section(rows, "day")) == 7
    completed = section(rows, "completed_tasks")
    assert int(completed["analyst_included"]["count"]) \
        + int(completed["analyst_excluded"]["count"]) > 0
    budgets = section(rows, "budget")
    assert float(budgets["fleet-weekly"]["cost_usd"]) == pytest.approx(total, abs=1e-6)
    assert budgets["fleet-weekly"]["period_state"] == "exceeded"
    assert float(budgets["builders-daily"]["cost_usd"]) == pytest.approx(by_role["BUILDER"],
                                                                         abs=1e-6)
    assert budgets["builders-daily"]["period_state"] == ""  # a daily budget in a weekly report
    assert next(iter(section(rows, "top_task"))) == "task-hostile"
    assert section(rows, "top_task")["task-hostile"]["detail"].endswith(HOSTILE)
    assert len(section(rows, "top_agent")) == 10
    assert f"'{FORMULA_AGENT}" in section(rows, "top_agent")  # a spreadsheet shows, not runs it

    markdown = report_file(exporter, tmp_path / "r.md", *week, "--format", "md")
    shown = re.search(r"\*\*Total: (\$[\d,.]+)\*\*", markdown)
    assert shown is not None and cents(shown.group(1)) == pytest.approx(total, abs=0.005)
    for role, cost in by_role.items():
        row = re.search(rf"^\| {role} \| (\$[\d,.]+) \|", markdown, re.MULTILINE)
        assert row is not None and cents(row.group(1)) == pytest.approx(cost, abs=0.005)

    page = report_file(exporter, tmp_path / "r.html", *week, "--format", "html")
    dom = Dom.of(page)
    assert float(dom.total) == pytest.approx(total, abs=1e-6)
    assert cents(dom.total_text) == pytest.approx(total, abs=0.005)


def test_without_at_the_report_is_the_last_complete_period():
    now = datetime.datetime(2025, 1, 1, 8, tzinfo=datetime.UTC).timestamp()  # a Wednesday
    day, week, month = (report_period(kind, None, now) for kind in ("day", "week", "month"))
    assert (day.first_day, day.end_day, day.name) == ("2024-12-31", "2025-01-01", "2024-12-31")
    assert (week.first_day, week.last_day, week.name) == ("2024-12-23", "2024-12-29", "2024-W52")
    assert (month.first_day, month.end_day, month.name) == ("2024-12-01", "2025-01-01", "2024-12")
    current = report_period("week", datetime.date(2025, 1, 1), now)
    assert (current.first_day, current.name) == ("2024-12-30", "2025-W01")
    assert current.previous() == week
    march = report_period("month", datetime.date(2024, 3, 31), now)
    assert (march.previous().first_day, march.previous().last_day) == ("2024-02-01",
                                                                       "2024-02-29")


# -- the HTML in a browser ----------------------------------------------------------------------


class Dom(HTMLParser):
    """What the tests look for in a page: bars per chart, scripts, the total."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: Counter[str] = Counter()
        self.bar_keys: dict[str, list[str]] = {}
        self.scripts = 0
        self.images = 0
        self.total = ""
        self.total_text = ""
        self.text: list[str] = []
        self._chart: str | None = None
        self._in_total = False

    @classmethod
    def of(cls, page: str) -> Dom:
        dom = cls()
        dom.feed(page)
        dom.close()
        return dom

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "svg":
            self._chart = attributes.get("id")
        elif tag == "rect" and attributes.get("class") == "bar" and self._chart:
            self.bars[self._chart] += 1
            self.bar_keys.setdefault(self._chart, []).append(attributes.get("data-key") or "")
        elif tag == "script":
            self.scripts += 1
        elif tag in ("img", "iframe", "object", "embed", "link"):
            self.images += 1
        elif attributes.get("id") == "total-usd":
            self.total, self._in_total = attributes.get("data-usd") or "", True

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None
        self._in_total = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_total:
            self.total_text += data


def chromium(tmp_path: Path, *arguments: str) -> str:
    binary = require_binary("chromium", "chromium")  # `make system-deps` installs it
    done = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         f"--user-data-dir={tmp_path / 'chromium'}", *arguments],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_html_renders_in_chromium_with_its_charts(exporter_factory: ExporterFactory,
                                                      tmp_path: Path):
    exporter = exporter_factory(config=BUDGETS)
    fleet_in_one_week(exporter)
    _, by_role = metric_costs(exporter)
    path = tmp_path / "report.html"
    page = report_file(exporter, path, "--period", "week", "--at", AT, "--format", "html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing external

    dom = Dom.of(chromium(tmp_path, "--dump-dom", path.as_uri()))
    assert sorted(dom.bar_keys["chart-role"]) == sorted(by_role)  # one bar per role
    assert dom.bars["chart-model"] == 4 and dom.bars["chart-day"] == 7
    assert dom.scripts == 0 and dom.images == 0  # the hostile description stayed text
    assert HOSTILE in "".join(dom.text)

    screenshot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,1600", path.as_uri())
    width, height, pixels = png_colours(screenshot.read_bytes())
    assert (width, height) == (1200, 1600)
    assert len(pixels) > 50  # text, cards, tables: not a blank page
    assert pixels[BAR_BLUE] > 5_000  # the bars are painted

    pdf = tmp_path / "report.pdf"
    chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", path.as_uri())
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf.read_bytes())
    assert boxes and all(round(float(w)) == 595 and round(float(h)) == 842 for w, h in boxes)


def png_colours(data: bytes) -> tuple[int, int, Counter[bytes]]:
    """Width, height and pixels per RGB colour of an 8-bit RGB or RGBA PNG (Chromium's)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks, header = 8, [], b""
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6) and header[12] == 0  # not interlaced
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    colours: Counter[bytes] = Counter()
    previous = bytes(width * channels)
    for y in range(height):
        start = y * (width * channels + 1)
        previous = _unfilter(raw[start], raw[start + 1:start + 1 + width * channels], previous,
                             channels)
        colours.update(previous[x:x + 3] for x in range(0, len(previous), channels))
    return width, height, colours


def _unfilter(kind: int, line: bytes, above: bytes, channels: int) -> bytes:
    """One scanline back from its PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 0:
        return line
    size = len(line)
    if kind == 2:  # bytewise addition of whole rows at once: no carry crosses a byte
        low, high = int("7f" * size, 16), int("80" * size, 16)
        x, b = int.from_bytes(line, "big"), int.from_bytes(above, "big")
        return (((x & low) + (b & low)) ^ ((x ^ b) & high)).to_bytes(size, "big")
    out = bytearray(line)
    for i in range(size):
        a = out[i - channels] if i >= channels else 0
        b = above[i]
        c = above[i - channels] if i >= channels else 0
        if kind == 1:
            predicted = a
        elif kind == 3:
            predicted = (a + b) >> 1
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            predicted = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (out[i] + predicted) & 255
    return bytes(out)


# -- untrusted text -----------------------------------------------------------------------------


def hostile_report() -> Report:
    """A report whose every text field is hostile, as a future id rule might let through."""
    period = Period.holding("day", MORNING)
    line = Line(HOSTILE, 1.0, 10, 0.5)
    agent = {"agent_id": "<script>alert(3)</script>", "role": HOSTILE, "model": "=1+2",
             "status": "running", "task_id": HOSTILE, "cost_usd": 1.0,
             "tokens": {"total": 10}}
    task = {"task_id": "@SUM(A1)", "task_type": HOSTILE, "status": "failed", "cost_usd": 1.0,
            "description": HOSTILE + "\nsecond line"}
    budget = {"name": HOSTILE, "period": "day", "scope": {"role": HOSTILE}, "limit_usd": 1.0,
              "spent_usd": 0.5, "projected_usd": 2.0, "state": "warning"}
    return Report(period=period, previous=period.previous(), generated_at=MORNING + DAY,
                  url="http://x/<b>", total=Line("total", 1.0, 10, 0.5),
                  by={name: [line] for name in ("role", "model", "task_type", "workflow")},
                  days=[Line(period.first_day, 1.0, 10)],
                  completed=[CompletedTasks("included", 1, 1.0, 1.0, None),
                             CompletedTasks("excluded", 0, 0.0, None, None)],
                  budgets=[BudgetLine(budget, 1.0)], tasks=[task], agents=[agent])


def test_untrusted_text_is_escaped_in_every_format():
    report = hostile_report()
    page = render_html(report)
    dom = Dom.of(page)
    assert dom.scripts == 0 and dom.images == 0
    assert "<script>alert(3)</script>" in "".join(dom.text)  # shown, as text
    assert "<b>" not in page and "&lt;script&gt;alert(3)" in page

    markdown = render_markdown(report)
    assert re.search(r"(?<!\\)<", markdown) is None  # every < escaped: no inline HTML
    widths = table_widths(markdown)
    assert widths and all(cells == header for cells, header in widths)  # no extra cell
    assert "\\<script\\>" in markdown and "second line" in markdown

    rows = csv_rows(render_csv(report))
    assert section(rows, "top_agent")["<script>alert(3)</script>"]["detail"].startswith(HOSTILE)
    assert "'@SUM(A1)" in section(rows, "top_task")  # not run as a formula
    assert section(rows, "top_agent")["<script>alert(3)</script>"]["detail"].count("=1+2") == 1


def test_the_docs_name_every_csv_column_and_section():
    text = (repository_root() / "docs" / "reports.md").read_text(encoding="utf-8")
    listed = re.search(r"The columns, in order: (.*?)\. ", text, re.DOTALL)
    assert listed is not None
    assert re.findall(r"`(\w+)`", listed.group(1)) == list(CSV_COLUMNS)
    sections = {row["section"] for row in csv_rows(render_csv(hostile_report()))}
    assert [name for name in sorted(sections) if f"`{name}`" not in text] == []


def table_widths(markdown: str) -> list[tuple[int, int]]:
    """(cells of the row, cells of its table's header) for each row of each Markdown table;
    an escaped `\\|` is text, not a border."""
    widths, header = [], 0
    for line in markdown.splitlines():
        cells = len(re.findall(r"(?<!\\)\|", line)) - 1
        if line.startswith("|---"):
            continue
        if not line.startswith("|"):
            header = 0
        elif header == 0:
            header = cells
        else:
            widths.append((cells, header))
    return widths


# -- trends -------------------------------------------------------------------------------------


def spend(agent: str, role: str, cost: float, when: float) -> list[dict[str, Any]]:
    return [{"type": "agent.created", "id": f"{agent}-created", "agent_id": agent, "role": role,
             "model": "claude-haiku-4-5", "timestamp": when},
            {"type": "agent.usage", "id": f"{agent}-usage", "agent_id": agent, "cost_usd": cost,
             "timestamp": when + 1}]


def test_trends_compare_with_the_previous_period(exporter_factory: ExporterFactory,
                                                 tmp_path: Path):
    exporter = exporter_factory()
    tuesday, wednesday = MORNING - DAY, MORNING
    post(exporter, [*spend("b-1", "BUILDER", 2.0, tuesday), *spend("r-1", "REVIEWER", 1.0,
                                                                     tuesday),
                    *spend("b-2", "BUILDER", 3.0, wednesday),
                    *spend("t-2", "TESTER", 0.5, wednesday),
                    *spend("b-0", "BUILDER", 4.0, wednesday - 7 * DAY)])  # the week before

    rows = csv_rows(report_file(exporter, tmp_path / "day.csv", "--period", "day", "--at", AT,
                                "--format", "csv"))
    total = section(rows, "total")["total"]
    assert (total["cost_usd"], total["previous_cost_usd"], total["change_usd"],
            total["change_percent"]) == ("3.5", "3", "0.5", "16.67")
    roles = {key: (row["cost_usd"], row["previous_cost_usd"], row["change_usd"],
                   row["change_percent"]) for key, row in section(rows, "role").items()}
    assert roles == {"BUILDER": ("3", "2", "1", "50.00"), "TESTER": ("0.5", "0", "0.5", ""),
                     "REVIEWER": ("0", "1", "-1", "-100.00")}
    assert list(section(rows, "role")) == ["BUILDER", "TESTER", "REVIEWER"]

    rows = csv_rows(report_file(exporter, tmp_path / "week.csv", "--period", "week", "--at",
                                AT, "--format", "csv"))
    total = section(rows, "total")["total"]
    assert (total["cost_usd"], total["previous_cost_usd"], total["change_percent"]) \
        == ("6.5", "4", "62.50")
    assert section(rows, "day")["2025-03-11"]["cost_usd"] == "3"

    markdown = report_file(exporter, tmp_path / "day.md", "--period", "day", "--at", AT)
    assert "**Total: $3.50** (previous $3.00, +$0.5000, +16.7%)" in markdown
    assert "| REVIEWER | $0.00 | $1.00 | -$1.00 | -100.0% | 0 |" in markdown


def test_a_refused_read_is_one_line_and_exit_1(exporter_factory: ExporterFactory):
    exporter = exporter_factory()
    done = run_report(exporter, "--at", AT, token="not-a-token")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1
