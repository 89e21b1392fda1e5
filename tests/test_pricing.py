"""The price table: each model priced as itself, never as another version; worked examples.

Sources of the expected numbers, each named where it is used:
- PRICING: https://platform.claude.com/docs/en/about-claude/pricing ("Model pricing", "Long
  context pricing"), the rows quoted next to each vector.
- LONG_2026_02: the same page's Long context pricing table as of 2026-02 (Sonnet 4.5 and 4 over
  200k input tokens: $6 / $22.50).
"""

from __future__ import annotations

import calendar
from decimal import Decimal

import pytest

from exporter.pricing import NANO_PER_USD, load_price_table, model_key, parse_prices

TABLE = load_price_table()


def usd(model: str, input_tokens: int = 0, output_tokens: int = 0, cache_read: int = 0,
        cache_write: int = 0, *, one_request: bool = True) -> Decimal:
    price = TABLE.lookup(model)
    assert price is not None, model
    nano = price.cost_nano(input_tokens, output_tokens, cache_read, cache_write,
                           one_request=one_request)
    return Decimal(nano) / NANO_PER_USD


@pytest.mark.parametrize(("model", "expected"), [
    # The regression of issue 15: these took claude-opus-4's $15/$75 by prefix.
    ("claude-opus-4-6", "claude-opus-4-6"),
    ("claude-opus-4-7", "claude-opus-4-7"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ("claude-opus-4-5@20251101", "claude-opus-4-5"),
    ("us.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("claude-opus-5-5[1m]", "claude-opus-5-5"),
    ("claude-opus-4-20250514", "claude-opus-4"),
])
def test_a_model_id_resolves_to_its_own_model(model: str, expected: str) -> None:
    assert model_key(model) == expected
    assert TABLE.lookup(model) == TABLE.lookup(expected) is not None


@pytest.mark.parametrize("model", [
    "claude-opus-4-9", "claude-opus", "claude-opus-4-6-mini", "claude-sonnet-6", "claude",
    "claude-fable-5-2",  # released 2026-11-09 with no official row available: unpriced
])
def test_an_unknown_version_is_unpriced_not_priced_as_its_neighbour(model: str) -> None:
    assert TABLE.lookup(model) is None


def test_aliases_name_the_same_model() -> None:
    assert TABLE.lookup("claude-opus-4-0") == TABLE.lookup("claude-opus-4")
    assert TABLE.lookup("claude-sonnet-4-0") == TABLE.lookup("claude-sonnet-4")


# PRICING, Model pricing rows ("Base input | 5m cache writes | 1h cache writes | Cache hits |
# Output"): one million tokens of each type costs the row's dollars.
@pytest.mark.parametrize(("model", "row"), [
    ("claude-fable-5-1", ("10", "12.50", "20", "0.25", "50")),
    ("claude-fable-5", ("10", "12.50", "20", "1", "50")),
    ("claude-opus-5-5", ("4", "5", "8", "0.20", "20")),
    ("claude-opus-5", ("5", "6.25", "10", "0.50", "25")),
    ("claude-opus-4-8", ("5", "6.25", "10", "0.50", "25")),
    ("claude-opus-4-7", ("5", "6.25", "10", "0.50", "25")),
    ("claude-opus-4-6", ("5", "6.25", "10", "0.50", "25")),
    ("claude-opus-4-5", ("5", "6.25", "10", "0.50", "25")),
    ("claude-opus-4-1", ("15", "18.75", "30", "1.50", "75")),
    ("claude-sonnet-5-5", ("2", "2.50", "4", "0.10", "10")),
    ("claude-sonnet-5", ("2", "2.50", "4", "0.20", "10")),
    ("claude-sonnet-4-6", ("3", "3.75", "6", "0.30", "15")),
    ("claude-haiku-5-5", ("0.10", "0.125", "0.20", "0.01", "0.50")),
    ("claude-haiku-4-5", ("1", "1.25", "2", "0.10", "5")),
    ("claude-3-5-haiku", ("0.80", "1", "1.6", "0.08", "4")),
])
def test_published_rows(model: str, row: tuple[str, ...]) -> None:
    million = 1_000_000
    price = TABLE.lookup(model)
    assert price is not None
    assert usd(model, input_tokens=million, one_request=False) == Decimal(row[0])
    assert usd(model, cache_write=million, one_request=False) == Decimal(row[1])
    assert Decimal(price.cache_write_1h) * million / NANO_PER_USD == Decimal(row[2])
    assert usd(model, cache_read=million, one_request=False) == Decimal(row[3])
    assert usd(model, output_tokens=million, one_request=False) == Decimal(row[4])


def test_context_windows() -> None:
    # Models overview: 1M on Claude 4.6 and later, 200K on Opus 4.5 and Haiku 4.5.
    windows = {model: TABLE.lookup(model).context_window  # type: ignore[union-attr]
               for model in ("claude-opus-4-6", "claude-sonnet-5-5", "claude-haiku-5-5",
                             "claude-opus-4-5", "claude-haiku-4-5", "claude-sonnet-4-5")}
    assert windows == {"claude-opus-4-6": 1_000_000, "claude-sonnet-5-5": 1_000_000,
                       "claude-haiku-5-5": 1_000_000, "claude-opus-4-5": 200_000,
                       "claude-haiku-4-5": 200_000, "claude-sonnet-4-5": 200_000}


def test_haiku_5_5_is_priced_by_prompt_length() -> None:
    # PRICING, Long context pricing: "Claude Haiku 5.5 is priced by prompt length: a prompt of
    # over 100,000 tokens pays higher prices" ($0.50 / $2.50 instead of $0.10 / $0.50).
    assert usd("claude-haiku-5-5", 100_000, 1_000) == Decimal("0.0105")
    assert usd("claude-haiku-5-5", 100_001, 1_000) == Decimal("0.0525005")
    # The prompt counts cache reads and writes too: 40k + 40k + 20,001 > 100k.
    assert usd("claude-haiku-5-5", 40_000, 0, 40_000, 20_001) == Decimal(
        "0.02") + Decimal("0.002") + Decimal("0.012500625")
    # A sum over several requests (a running total's increase) keeps the base rates.
    assert usd("claude-haiku-5-5", 100_001, 1_000, one_request=False) == Decimal("0.0105001")


def test_sonnet_4_5_long_context() -> None:
    # LONG_2026_02: "requests exceeding 200k input tokens are charged at premium long context
    # rates": 250k input and 1k output at $6 / $22.50.
    assert usd("claude-sonnet-4-5-20250929", 250_000, 1_000) == Decimal("1.5225")
    assert usd("claude-sonnet-4-5-20250929", 200_000, 1_000) == Decimal("0.615")


def test_an_override_is_exact_and_wins() -> None:
    table = load_price_table(parse_prices({
        "claude-opus-4-6": {"input": 1, "output": 2, "cache_read": 0.1, "cache_write": 1.25},
        "acme-1": {"input": 2, "output": 4, "cache_read": 0.2, "cache_write": 2.5}}))
    assert table.lookup("claude-opus-4-6") is not None
    assert table.lookup("claude-opus-4-6").input == 1000  # type: ignore[union-attr]
    assert table.lookup("claude-opus-4-7").input == 5000  # type: ignore[union-attr]
    assert table.lookup("acme-1-20260101") is not None
    assert table.lookup("acme-2") is None


@pytest.mark.parametrize(("entry", "message"), [
    ({"input": 1, "output": 1, "cache_read": 1}, "missing cache_write"),
    ({"input": 1, "output": 1, "cache_read": 1, "cache_write": 1, "cahce": 1}, "unknown cahce"),
    ({"input": -1, "output": 1, "cache_read": 1, "cache_write": 1}, "non-negative"),
    ({"input": 1, "output": 1, "cache_read": 1, "cache_write": 1, "context_window": 1.5},
     "whole number"),
    ({"input": 1, "output": 1, "cache_read": 1, "cache_write": 1,
      "long_context": {"input": 1}}, "above_tokens"),
])
def test_bad_entries_are_refused_with_their_path(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_prices({"m": entry})


def test_prices_have_effective_dates():
    # PRICING footnote 2 (Oct 2026): "Cache hits and refreshes on Claude Opus 5.5 and Claude
    # Sonnet 5.5 are priced at 0.05x the base input price"; the Sep 2026 rows had Sonnet 5.5's
    # cache hits at $0.20.
    before = calendar.timegm((2026, 10, 6, 23, 59, 59))
    after = calendar.timegm((2026, 10, 7, 0, 0, 0))
    assert TABLE.lookup("claude-sonnet-5-5", before).cache_read == 200  # type: ignore[union-attr]
    assert TABLE.lookup("claude-sonnet-5-5", after).cache_read == 100  # type: ignore[union-attr]
    assert TABLE.lookup("claude-sonnet-5-5").cache_read == 100  # type: ignore[union-attr]
    table = load_price_table(parse_prices({"m": {
        "input": 2, "output": 4, "cache_read": 0.2, "cache_write": 2.5,
        "earlier": [{"until": "2026-01-01", "input": 1}, {"until": "2026-06-01", "input": 1.5}]}}))
    assert [table.lookup("m", calendar.timegm(day)).input  # type: ignore[union-attr]
            for day in ((2025, 12, 31, 0, 0, 0), (2026, 3, 1, 0, 0, 0),
                        (2026, 6, 1, 0, 0, 0))] == [1000, 1500, 2000]
    with pytest.raises(ValueError, match="must increase"):
        parse_prices({"m": {"input": 2, "output": 4, "cache_read": 0.2, "cache_write": 2.5,
                            "earlier": [{"until": "2026-06-01", "input": 1},
                                        {"until": "2026-01-01", "input": 1.5}]}})
    with pytest.raises(ValueError, match="must be a date"):
        parse_prices({"m": {"input": 2, "output": 4, "cache_read": 0.2, "cache_write": 2.5,
                            "earlier": [{"until": "soon", "input": 1}]}})


def test_one_hour_cache_writes():
    # Worked example (recomputed from PRICING's Opus 5.5 row: $4 input, $5 5m write, $8 1h
    # write, $0.20 hit, $20 output): 1,000 input, 60,000 cache reads, 10,000 5-minute and
    # 20,000 1-hour writes, 2,000 output = 0.004 + 0.012 + 0.05 + 0.16 + 0.04 = $0.266.
    price = TABLE.lookup("claude-opus-5-5")
    assert price is not None
    nano = price.cost_nano(1_000, 2_000, 60_000, 30_000, creation_1h=20_000)
    assert Decimal(nano) / NANO_PER_USD == Decimal("0.266")
    # Without a split every write is a 5-minute one.
    assert price.cost_nano(0, 0, 0, 30_000) == 30_000 * 5_000
