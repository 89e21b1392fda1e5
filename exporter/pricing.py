"""Token prices: the shipped table of Claude models, overridable from the config file.

Prices are kept as integer nano-dollars per token, so a cost is an exact integer and sums of
costs never depend on the order events arrive in.
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from typing import Any, Final

import yaml

NANO_PER_USD: Final = 1_000_000_000
PRICE_KEYS: Final = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True, slots=True)
class Price:
    """Nano-dollars per token for each token type, and the model's context window."""

    input: int
    output: int
    cache_read: int
    cache_write: int  # a 5-minute cache write
    cache_write_1h: int = 0
    context_window: int = 0  # tokens; 0 when the table does not say
    aliases: tuple[str, ...] = ()
    # A request whose prompt (input, cache read and cache write tokens) is over `long_above`
    # tokens pays `long_context` prices for all its tokens, output included.
    long_above: int = 0
    long_context: Price | None = None
    # Earlier prices, oldest first: (until, price) applies to usage before `until` (Unix
    # seconds) and after the previous one's, so a price change never reprices the past.
    earlier: tuple[tuple[float, Price], ...] = ()
    # Multipliers of every token price: fast mode (None: the model has none and bills standard
    # rates), and data-residency (`inference_geo`) by region.
    fast: Fraction | None = None
    geo: tuple[tuple[str, Fraction], ...] = ()

    def multiplier(self, *, tier: str | None, speed: str | None, geo: str | None) -> Fraction:
        """What a request's options multiply its cost by: batch halves it, fast mode and a
        region's data residency multiply it (priority tier has no list price: standard)."""
        factor = Fraction(1)
        if tier == "batch":
            factor *= BATCH
        if speed == "fast" and self.fast is not None:
            factor *= self.fast
        if geo is not None:
            factor *= dict(self.geo).get(geo, Fraction(1))
        return factor

    def at(self, timestamp: float | None) -> Price:
        """The price in force at `timestamp` (None: now)."""
        if timestamp is not None:
            for until, price in self.earlier:
                if timestamp < until:
                    return price
        return self

    def cost_nano(self, input_tokens: int, output_tokens: int, cache_read: int,
                  cache_creation: int, *, one_request: bool = True,
                  creation_1h: int = 0) -> int:
        """The cost of the tokens; `one_request`: they are one request's, so the prompt-length
        tier applies (a sum over several requests is priced at the base rates). Of the
        `cache_creation` tokens, `creation_1h` were 1-hour cache writes, the rest 5-minute."""
        price = self
        if (one_request and self.long_context is not None
                and input_tokens + cache_read + cache_creation > self.long_above):
            price = self.long_context
        creation_1h = min(creation_1h, cache_creation)
        return (input_tokens * price.input + output_tokens * price.output
                + cache_read * price.cache_read
                + (cache_creation - creation_1h) * price.cache_write
                + creation_1h * price.cache_write_1h)


def usd_to_nano(usd: float) -> int:
    """Round a dollar amount to whole nano-dollars, through its shortest decimal form."""
    return int((Decimal(repr(usd)) * NANO_PER_USD).to_integral_value())


OPTIONAL_KEYS: Final = ("cache_write_1h", "context_window", "aliases", "long_context",
                         "earlier", "fast", "geo")
# "The Batch API ... with a 50% discount on both input and output tokens" (pricing page); the
# caching multipliers stack with it, so every token type is halved.
BATCH: Final = Fraction(1, 2)


def _per_token(model: str, key: str, per_million: object) -> int:
    if isinstance(per_million, bool) or not isinstance(per_million, int | float) \
            or per_million < 0:
        raise ValueError(f"pricing.{model}.{key}: must be a non-negative number")
    # USD per million tokens -> nano-dollars per token.
    return int(Decimal(repr(per_million)) * 1000)


def _price_from_mapping(model: str, entry: object) -> Price:
    if not isinstance(entry, Mapping):
        raise ValueError(f"pricing.{model}: must be a mapping of {', '.join(PRICE_KEYS)}")
    missing = [key for key in PRICE_KEYS if key not in entry]
    if missing:
        raise ValueError(f"pricing.{model}: missing {', '.join(missing)}")
    unknown = sorted(set(map(str, entry)) - set(PRICE_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"pricing.{model}: unknown {', '.join(unknown)}")
    base_input, output, cache_read, cache_write = (_per_token(model, key, entry[key])
                                                   for key in PRICE_KEYS)
    # Anthropic prices a 1-hour cache write at twice the base input price.
    write_1h = _per_token(model, "cache_write_1h", entry["cache_write_1h"]) \
        if "cache_write_1h" in entry else 2 * base_input
    window = entry.get("context_window", 0)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"pricing.{model}.context_window: must be a whole number of tokens")
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
        raise ValueError(f"pricing.{model}.aliases: must be a list of model ids")
    long_above, long_context = _long_context(model, entry.get("long_context"))
    price = Price(base_input, output, cache_read, cache_write, cache_write_1h=write_1h,
                  context_window=window, aliases=tuple(aliases), long_above=long_above,
                  long_context=long_context, fast=_factor(model, "fast", entry.get("fast")),
                  geo=_geo(model, entry.get("geo")))
    return _with_earlier(model, entry, price)


def _factor(model: str, key: str, value: object) -> Fraction | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ValueError(f"pricing.{model}.{key}: must be a multiplier above 0, at most 100")
    return Fraction(repr(value))


def _geo(model: str, value: object) -> tuple[tuple[str, Fraction], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ValueError(f"pricing.{model}.geo: must map a region to its multiplier")
    return tuple((str(region), _factor(model, f"geo.{region}", factor) or Fraction(1))
                 for region, factor in value.items())


def _with_earlier(model: str, entry: Mapping[Any, Any], price: Price) -> Price:
    """`earlier: [{until: DATE, <price keys that differed>}, ...]`: each item is the entry as
    it was before DATE (UTC midnight), the keys it names replacing the current ones."""
    items = entry.get("earlier", [])
    if not isinstance(items, list):
        raise ValueError(f"pricing.{model}.earlier: must be a list of {{until: DATE, ...}}")
    earlier: list[tuple[float, Price]] = []
    for index, item in enumerate(items):
        where = f"pricing.{model}.earlier[{index}]"
        if not isinstance(item, Mapping) or "until" not in item:
            raise ValueError(f"{where}: must be a mapping with until: YYYY-MM-DD")
        until = _utc_midnight(where, item["until"])
        changed = {key: value for key, value in item.items() if key != "until"}
        if set(changed) - {*PRICE_KEYS, "cache_write_1h", "long_context", "fast", "geo"}:
            raise ValueError(f"{where}: only until and price keys")
        base = {key: value for key, value in entry.items() if key not in ("earlier", "aliases")}
        earlier.append((until, _price_from_mapping(where, {**base, **changed})))
    if [until for until, _ in earlier] != sorted({until for until, _ in earlier}):
        raise ValueError(f"pricing.{model}.earlier: the until dates must increase")
    return replace(price, earlier=tuple(earlier))


def _utc_midnight(where: str, value: object) -> float:
    if isinstance(value, datetime.datetime):
        raise ValueError(f"{where}.until: must be a date, YYYY-MM-DD")
    if isinstance(value, str):
        try:
            value = datetime.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}.until: must be a date, YYYY-MM-DD") from None
    if not isinstance(value, datetime.date):
        raise ValueError(f"{where}.until: must be a date, YYYY-MM-DD")
    return calendar.timegm(value.timetuple())


def _long_context(model: str, entry: object) -> tuple[int, Price | None]:
    if entry is None:
        return 0, None
    if not isinstance(entry, Mapping) or "above_tokens" not in entry:
        raise ValueError(f"pricing.{model}.long_context: must be a mapping with above_tokens "
                         f"and {', '.join(PRICE_KEYS)}")
    above = entry["above_tokens"]
    if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
        raise ValueError(f"pricing.{model}.long_context.above_tokens: must be a positive "
                         "whole number of tokens")
    rest = {key: value for key, value in entry.items() if key != "above_tokens"}
    if set(rest) - {*PRICE_KEYS, "cache_write_1h"}:
        raise ValueError(f"pricing.{model}.long_context: only above_tokens, "
                         f"{', '.join(PRICE_KEYS)} and cache_write_1h")
    return above, _price_from_mapping(f"{model}.long_context", rest)


# How providers and clients decorate a model id around the one Anthropic prices:
# Bedrock's `us.anthropic.` prefix and `-v1:0` suffix, Vertex's `@20251101` snapshot, a dated
# snapshot `-20251101`, the `-latest` alias, and Claude Code's `[1m]` context marker.
_PREFIX: Final = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic[./]")
_BEDROCK_VERSION: Final = re.compile(r"-v\d+(?::\d+)?$")
_SNAPSHOT: Final = re.compile(r"(?:[-@]\d{8}|-latest)$")
_CONTEXT_MARKER: Final = re.compile(r"\[1m\]$")


def model_key(model: str) -> str:
    """The id a model is priced under: its own model without a provider's or a snapshot's
    decoration (`us.anthropic.claude-opus-4-5-20251101-v1:0` -> `claude-opus-4-5`). Never a
    shorter family name: `claude-opus-4-6` stays `claude-opus-4-6` and is unpriced if the table
    lacks it, instead of taking another version's price."""
    key = _CONTEXT_MARKER.sub("", model.strip().lower())
    key = _PREFIX.sub("", key)
    key = _BEDROCK_VERSION.sub("", key)
    return _SNAPSHOT.sub("", key)


class PriceTable:
    """Looks up the price of a model id by its own model (`model_key`), or by an alias the
    table names; a model id is never priced as another model."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = {model_key(model): price for model, price in prices.items()}
        # An alias names the model it stands for (`claude-opus-4-0` -> `claude-opus-4`).
        self._aliases = {model_key(alias): model_key(model)
                         for model, price in prices.items() for alias in price.aliases}
        self._cache: dict[str, Price | None] = {}

    def lookup(self, model: str, at: float | None = None) -> Price | None:
        """The model's price in force at `at` (Unix seconds; None: the current one)."""
        if model in self._cache:
            found = self._cache[model]
        else:
            key = model_key(model)
            found = self._prices.get(self._aliases.get(key, key))
            if len(self._cache) < 10_000:
                self._cache[model] = found
        return None if found is None else found.at(at)

    def models(self) -> dict[str, Price]:
        return dict(self._prices)


def parse_prices(entries: Mapping[str, object]) -> dict[str, Price]:
    return {str(model): _price_from_mapping(str(model), entry)
            for model, entry in entries.items()}


def load_price_table(overrides: Mapping[str, Price] | None = None) -> PriceTable:
    """The shipped table with the config file's `pricing:` entries laid over it."""
    shipped = yaml.safe_load(resources.files("exporter").joinpath("pricing.yaml").read_text())
    prices = parse_prices(shipped)
    prices.update(overrides or {})
    return PriceTable(prices)
