"""`orchestrator-exporter prices`: the models the ledger has seen, what each costs, and which
are unpriced (usage counted at $0 in orchestrator_unpriced_usage_events_total until a price is
added under `pricing:` in the config file)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Engine, func, select

from exporter.ledger import schema
from exporter.pricing import Price, PriceTable, model_key
from exporter.series import LABEL_SEPARATOR, split_key

UNPRICED: Final = "orchestrator_unpriced_usage_events_total"


@dataclass(frozen=True, slots=True)
class ModelLine:
    model: str
    priced_as: str | None
    price: Price | None
    seen: bool
    unpriced_events: int
    cost_usd: float


def per_million(nano_per_token: int) -> str:
    return format((Decimal(nano_per_token) / 1000).normalize(), "f")


def seen_models(engine: Engine) -> tuple[dict[str, float], dict[str, int]]:
    """Cost per model from the per-day sums, and unpriced usage events per model."""
    daily = schema.daily_cost
    counters = schema.counters
    with engine.connect() as connection:
        costs = {str(model): int(nano or 0) / 1e9 for model, nano in connection.execute(
            select(daily.c.model, func.sum(daily.c.cost_nano)).group_by(daily.c.model))}
        unpriced: dict[str, int] = {}
        for key, value in connection.execute(select(counters.c.key, counters.c.value).where(
                counters.c.key.like(UNPRICED + LABEL_SEPARATOR + "%"))):
            _name, labels = split_key(key)
            unpriced[labels[-1]] = unpriced.get(labels[-1], 0) + int(value)
    return costs, unpriced


def model_lines(table: PriceTable, engine: Engine, *, everything: bool) -> list[ModelLine]:
    costs, unpriced = seen_models(engine)
    names = set(costs) | set(unpriced)
    if everything:
        names |= set(table.models())
    lines = []
    for name in sorted(names):
        price = table.lookup(name)
        lines.append(ModelLine(name, model_key(name) if price is not None else None, price,
                               name in costs or name in unpriced, unpriced.get(name, 0),
                               costs.get(name, 0.0)))
    return lines


def as_dict(line: ModelLine) -> dict[str, Any]:
    price = line.price
    return {"model": line.model, "priced_as": line.priced_as, "seen": line.seen,
            "unpriced_events": line.unpriced_events, "cost_usd": line.cost_usd,
            "usd_per_million": None if price is None else {
                "input": float(per_million(price.input)),
                "output": float(per_million(price.output)),
                "cache_read": float(per_million(price.cache_read)),
                "cache_write_5m": float(per_million(price.cache_write)),
                "cache_write_1h": float(per_million(price.cache_write_1h))},
            "context_window": None if price is None else price.context_window or None}


def render(lines: list[ModelLine]) -> str:
    header = ("model", "priced as", "input", "output", "cache read", "write 5m", "write 1h",
              "context", "cost USD", "unpriced events")
    rows: list[tuple[str, ...]] = [header]
    for line in lines:
        price = line.price
        prices = ("-",) * 5 if price is None else tuple(per_million(value) for value in (
            price.input, price.output, price.cache_read, price.cache_write,
            price.cache_write_1h))
        window = "-" if price is None or not price.context_window else f"{price.context_window:,}"
        rows.append((line.model, line.priced_as or "UNPRICED", *prices, window,
                     f"{line.cost_usd:.6f}", str(line.unpriced_events)))
    widths = [max(len(row[index]) for row in rows) for index in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in rows]
    missing = [line.model for line in lines if line.price is None]
    if missing:
        text.append("")
        text.append(f"{len(missing)} unpriced: add them under `pricing:` in the config file "
                    "(USD per million tokens; docs/configuration.md), then restart the exporter.")
    return "\n".join(text)
