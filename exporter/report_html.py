"""The cost report as one self-contained HTML file: inline CSS, inline SVG bar charts, no script
and nothing loaded from anywhere (its Content-Security-Policy tells the browser so), readable
offline and printable on A4.

Every value read from the exporter goes through `html.escape`: agent ids, task descriptions and
model names are whatever the orchestrators sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Final

from exporter.report import (
    AGENT_COLUMNS,
    AGENT_NOTE,
    BUDGET_COLUMNS,
    DIMENSION_TITLES,
    DIMENSIONS,
    TASK_COLUMNS,
    TOP,
    Line,
    Report,
    agent_cells,
    budget_cells,
    budget_note,
    completed_cells,
    line_cells,
    percent,
    signed,
    status_line,
    task_cells,
    usd_or_dash,
    when,
)
from exporter.terminal import usd

WIDTH: Final = 680  # SVG user units; the charts scale to the page's width
LABEL_WIDTH: Final = 190
VALUE_WIDTH: Final = 90
ROW_HEIGHT: Final = 26
LABEL_CHARS: Final = 24
# A chart of more bars than this is unreadable on A4: the rest are summed into one bar.
MAX_BARS: Final = 15
DAY_CHART_HEIGHT: Final = 180
AXIS_WIDTH: Final = 70
NUMERIC: Final = frozenset({"cost", "previous", "change", "change %", "tokens", "completed",
                            "mean per task", "previous mean", "limit", "spent in report",
                            "spent now", "projected"})

STYLE: Final = """
:root { --bar: #2b6cb0; --previous: #a0aec0; --ink: #1a202c; --muted: #718096;
        --rule: #e2e8f0; --up: #c53030; --down: #2f855a; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 190mm; margin: 0 auto; padding: 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 6px; border-bottom: 1px solid var(--rule); }
p.meta, p.note, p.empty { color: var(--muted); margin: 2px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { flex: 1 1 150px; border: 1px solid var(--rule); border-radius: 6px; padding: 8px 10px; }
.card .name { color: var(--muted); font-size: 12px; }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
th, td { padding: 3px 6px; text-align: left; vertical-align: top; }
th { color: var(--muted); font-weight: 500; border-bottom: 1px solid var(--rule); }
tbody tr:nth-child(even) { background: #f7fafc; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums;
                       white-space: nowrap; }
td.text { overflow-wrap: anywhere; }
.up { color: var(--up); } .down { color: var(--down); }
svg.chart { width: 100%; height: auto; display: block; margin: 4px 0 10px; }
svg .bar { fill: var(--bar); } svg .previous { fill: var(--previous); }
svg text { font-size: 12px; fill: var(--ink); } svg .axis { fill: var(--muted); }
svg line { stroke: var(--rule); }
.legend { font-size: 12px; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
.legend i.this { background: var(--bar); } .legend i.before { background: var(--previous); }
@page { size: A4; margin: 12mm; }
@media print {
  body { font-size: 11px; } main { max-width: none; padding: 0; }
  section { break-inside: avoid; } thead { display: table-header-group; }
  tr { break-inside: avoid; }
}
"""
# Inline styles only; no script, image, font or frame from anywhere, this file included.
POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'"


def render_html(report: Report) -> str:
    """The report as a complete HTML document."""
    title = f"Cost report: {report.period.title}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(status_line(report))}. Generated {_e(when(report.generated_at))} '
        f"from {_e(report.url)}; compared with {_e(report.previous.title)}.</p>",
        _cards(report),
        _section("Spend by role", _legend(), bar_chart("chart-role", "spend by role",
                                                       report.by["role"])),
        _section("Spend by model", _legend(), bar_chart("chart-model", "spend by model",
                                                        report.by["model"])),
        _section("Spend by day", day_chart(report.days)),
    ]
    for dimension in DIMENSIONS:
        name = DIMENSION_TITLES[dimension]
        body.append(_section(f"Spend by {name}, compared", _spend_table(name,
                                                                        report.by[dimension])))
    body.append(_section("Cost per completed task", _table(
        ("tasks", "completed", "cost", "mean per task", "previous mean", "change %"),
        [completed_cells(item) for item in report.completed])))
    body.append(_section("Budgets", f'<p class="note">{_e(budget_note(report))}</p>',
                         _table(BUDGET_COLUMNS, [budget_cells(line, report.period)
                                                 for line in report.budgets])))
    body.append(_section(f"Top {TOP} tasks",
                         '<p class="note">Submitted in the period, costliest first.</p>',
                         _table(TASK_COLUMNS, [task_cells(task) for task in report.tasks])))
    body.append(_section(f"Top {TOP} agents", f'<p class="note">{_e(AGENT_NOTE)}</p>',
                         _table(AGENT_COLUMNS, [agent_cells(agent) for agent in report.agents])))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _section(title: str, *parts: str) -> str:
    return f"<section>\n<h2>{_e(title)}</h2>\n" + "\n".join(parts) + "\n</section>"


def _cards(report: Report) -> str:
    total = report.total
    change = total.change_usd
    trend = _direction(total)
    ratio = "" if total.change_ratio is None else f" ({_e(percent(total.change_ratio))})"
    cards = [
        ("total", f'<span id="total-usd" data-usd="{total.cost_usd:.9f}">'
                  f"{_e(usd(total.cost_usd))}</span>"),
        ("previous period", _e(usd_or_dash(total.previous_usd))),
        ("change", f'<span class="{trend}">{_e(signed(change))}{ratio}</span>'),
        ("tokens", f"{total.tokens:,}"),
    ]
    for item in report.completed:
        with_or_without = "with" if item.analyst == "included" else "without"
        cards.append((f"per completed task, {with_or_without} ANALYST",
                      f"{_e(usd_or_dash(item.mean_usd))} <small>({item.tasks:,})</small>"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="name">{_e(name)}</div>'
        f'<div class="value">{value}</div></div>' for name, value in cards) + "</div>"


def _legend() -> str:
    return ('<p class="legend"><i class="this"></i>this period'
            '<i class="before"></i>previous period</p>')


# -- charts -------------------------------------------------------------------------------------


def _charted(lines: Sequence[Line]) -> list[Line]:
    if len(lines) <= MAX_BARS:
        return list(lines)
    kept, rest = lines[:MAX_BARS - 1], lines[MAX_BARS - 1:]
    return [*kept, Line(f"{len(rest)} others", sum(line.cost_usd for line in rest),
                        sum(line.tokens for line in rest),
                        sum(line.previous_usd or 0.0 for line in rest))]


def bar_chart(chart_id: str, label: str, lines: Sequence[Line]) -> str:
    """Horizontal bars, one per line (this period), each with a thin bar of the previous
    period under it, on one scale."""
    if not lines:
        return '<p class="empty">No spend in this period.</p>'
    shown = _charted(lines)
    top = max(max(line.cost_usd, line.previous_usd or 0.0) for line in shown) or 1.0
    plot = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    height = len(shown) * ROW_HEIGHT + 6
    rows = []
    for index, line in enumerate(shown):
        y = index * ROW_HEIGHT + 4
        width = plot * line.cost_usd / top
        before = plot * (line.previous_usd or 0.0) / top
        name = line.key if len(line.key) <= LABEL_CHARS else line.key[:LABEL_CHARS - 1] + "…"
        rows.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 12}" text-anchor="end">{_e(name)}'
            f"<title>{_e(line.key)}</title></text>"
            f'<rect class="bar" data-key="{_e(line.key)}" x="{LABEL_WIDTH}" y="{y}" '
            f'width="{width:.2f}" height="14"><title>{_e(line.key)}: {_e(usd(line.cost_usd))}'
            "</title></rect>"
            f'<rect class="previous" x="{LABEL_WIDTH}" y="{y + 16}" width="{before:.2f}" '
            f'height="5"><title>previous: {_e(usd_or_dash(line.previous_usd))}</title></rect>'
            f'<text x="{LABEL_WIDTH + width + 6:.2f}" y="{y + 12}">'
            f"{_e(usd(line.cost_usd))}</text>")
    return (f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_e(label)}">'
            + "".join(rows) + "</svg>")


def day_chart(days: Sequence[Line]) -> str:
    """Vertical bars, one per day of the period, on an axis from 0 to the costliest day."""
    if not days:
        return '<p class="empty">The period has not started.</p>'
    top = max(line.cost_usd for line in days) or 1.0
    plot_width, plot_height, base = WIDTH - AXIS_WIDTH, DAY_CHART_HEIGHT - 30, 10
    slot = plot_width / len(days)
    every = 1 if len(days) <= 10 else 5  # day labels that fit under the bars
    parts = [f'<line x1="{AXIS_WIDTH}" y1="{base}" x2="{WIDTH}" y2="{base}"/>',
             f'<line x1="{AXIS_WIDTH}" y1="{base + plot_height}" x2="{WIDTH}" '
             f'y2="{base + plot_height}"/>',
             f'<text class="axis" x="{AXIS_WIDTH - 6}" y="{base + 4}" text-anchor="end">'
             f"{_e(usd(top))}</text>",
             f'<text class="axis" x="{AXIS_WIDTH - 6}" y="{base + plot_height + 4}" '
             f'text-anchor="end">{_e(usd(0))}</text>']
    for index, line in enumerate(days):
        height = plot_height * line.cost_usd / top
        x = AXIS_WIDTH + index * slot + slot * 0.15
        parts.append(f'<rect class="bar" data-key="{_e(line.key)}" x="{x:.2f}" '
                     f'y="{base + plot_height - height:.2f}" width="{slot * 0.7:.2f}" '
                     f'height="{height:.2f}"><title>{_e(line.key)}: {_e(usd(line.cost_usd))}'
                     "</title></rect>")
        if index % every == 0:
            parts.append(f'<text class="axis" x="{x + slot * 0.35:.2f}" '
                         f'y="{base + plot_height + 16}" text-anchor="middle">'
                         f"{_e(line.key[5:])}</text>")
    return (f'<svg id="chart-day" class="chart" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {WIDTH} {DAY_CHART_HEIGHT}" role="img" aria-label="spend by day">'
            + "".join(parts) + "</svg>")


# -- tables -------------------------------------------------------------------------------------


def _spend_table(name: str, lines: Sequence[Line]) -> str:
    columns = (name, "cost", "previous", "change", "change %", "tokens")
    rows = [(line_cells(line), _direction(line)) for line in lines]
    return _table(columns, [cells for cells, _ in rows], [kind for _, kind in rows])


def _direction(line: Line) -> str:
    change = line.change_usd
    if change is None or round(change, 9) == 0:
        return ""
    return "up" if change > 0 else "down"


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]],
           directions: Sequence[str] = ()) -> str:
    rows = list(rows)
    if not rows:
        return '<p class="empty">None.</p>'
    kinds = ["number" if column in NUMERIC else "text" for column in columns]
    head = "".join(f'<th class="{kind}">{_e(column)}</th>'
                   for column, kind in zip(columns, kinds, strict=True))
    body = []
    for index, row in enumerate(rows):
        direction = directions[index] if index < len(directions) else ""
        cells = []
        for column, kind, cell in zip(columns, kinds, row, strict=True):
            extra = f" {direction}" if direction and column in ("change", "change %") else ""
            cells.append(f'<td class="{kind}{extra}">{_e(cell)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>" + "\n".join(body)
            + "</tbody></table>")
