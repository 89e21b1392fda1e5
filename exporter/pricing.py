"""Token prices: the shipped table of Claude models, overridable from the config file.

Prices are kept as integer nano-dollars per token, so a cost is an exact integer and sums of
costs never depend on the order events arrive in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Final

import yaml

NANO_PER_USD: Final = 1_000_000_000
PRICE_KEYS: Final = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True, slots=True)
class Price:
    """Nano-dollars per token for each token type."""

    input: int
    output: int
    cache_read: int
    cache_write: int

    def cost_nano(self, input_tokens: int, output_tokens: int, cache_read: int,
                  cache_creation: int) -> int:
        return (input_tokens * self.input + output_tokens * self.output
                + cache_read * self.cache_read + cache_creation * self.cache_write)


def usd_to_nano(usd: float) -> int:
    """Round a dollar amount to whole nano-dollars, through its shortest decimal form."""
    return int((Decimal(repr(usd)) * NANO_PER_USD).to_integral_value())


def _price_from_mapping(model: str, entry: object) -> Price:
    if not isinstance(entry, Mapping):
        raise ValueError(f"pricing.{model}: must be a mapping of {', '.join(PRICE_KEYS)}")
    missing = [key for key in PRICE_KEYS if key not in entry]
    if missing:
        raise ValueError(f"pricing.{model}: missing {', '.join(missing)}")
    values: list[int] = []
    for key in PRICE_KEYS:
        per_million = entry[key]
        if isinstance(per_million, bool) or not isinstance(per_million, int | float) \
                or per_million < 0:
            raise ValueError(f"pricing.{model}.{key}: must be a non-negative number")
        # USD per million tokens -> nano-dollars per token.
        values.append(int(Decimal(repr(per_million)) * 1000))
    return Price(*values)


class PriceTable:
    """Looks up the price of a model id by its longest matching prefix."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)
        self._by_length = sorted(self._prices, key=len, reverse=True)
        self._cache: dict[str, Price | None] = {}

    def lookup(self, model: str) -> Price | None:
        if model in self._cache:
            return self._cache[model]
        found = next((self._prices[key] for key in self._by_length if model.startswith(key)),
                     None)
        if len(self._cache) < 10_000:
            self._cache[model] = found
        return found


def parse_prices(entries: Mapping[str, object]) -> dict[str, Price]:
    return {str(model): _price_from_mapping(str(model), entry)
            for model, entry in entries.items()}


def load_price_table(overrides: Mapping[str, Price] | None = None) -> PriceTable:
    """The shipped table with the config file's `pricing:` entries laid over it."""
    shipped = yaml.safe_load(resources.files("exporter").joinpath("pricing.yaml").read_text())
    prices = parse_prices(shipped)
    prices.update(overrides or {})
    return PriceTable(prices)
