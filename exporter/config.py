"""The structured part of the configuration: the YAML file given by `--config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from exporter.pricing import Price, parse_prices

PERIODS: Final = ("day", "week", "month")
SCOPE_KEYS: Final = ("role", "model", "task_type", "workflow")


class ConfigError(ValueError):
    """The config file is unusable; the message names the key at fault."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit over a calendar period, for usage matching every key of its scope."""

    name: str
    limit_usd: float
    period: str
    scope: tuple[tuple[str, str], ...] = ()

    def matches(self, dimensions: dict[str, str]) -> bool:
        return all(dimensions.get(key) == value for key, value in self.scope)


@dataclass(frozen=True, slots=True)
class FileConfig:
    """What the YAML file holds."""

    budgets: tuple[Budget, ...] = ()
    pricing: dict[str, Price] = field(default_factory=dict)


def _budget(index: int, entry: object) -> Budget:
    where = f"budgets[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with name, limit_usd and period")
    unknown = set(entry) - {"name", "limit_usd", "period", "scope"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    name, limit, period = entry.get("name"), entry.get("limit_usd"), entry.get("period")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: must be a non-empty string")
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
        raise ConfigError(f"{where}.limit_usd: must be a positive number")
    if period not in PERIODS:
        raise ConfigError(f"{where}.period: must be one of {', '.join(PERIODS)}")
    scope = entry.get("scope") or {}
    if not isinstance(scope, dict) or set(scope) - set(SCOPE_KEYS):
        raise ConfigError(f"{where}.scope: may only hold {', '.join(SCOPE_KEYS)}")
    # Roles fold to upper case in events too: `analyst` and `ANALYST` are one scope.
    pairs = tuple(sorted((str(key), str(value).upper() if key == "role" else str(value))
                         for key, value in scope.items()))
    return Budget(name=name, limit_usd=float(limit), period=str(period), scope=pairs)


def parse_config(document: object) -> FileConfig:
    """Check a loaded YAML document and turn it into a FileConfig."""
    if document is None:
        return FileConfig()
    if not isinstance(document, dict):
        raise ConfigError("the config file must be a YAML mapping")
    unknown = set(document) - {"budgets", "pricing"}
    if unknown:
        raise ConfigError(f"unknown top-level keys {sorted(unknown)}")
    entries = document.get("budgets") or []
    if not isinstance(entries, list):
        raise ConfigError("budgets: must be a list")
    budgets = tuple(_budget(index, entry) for index, entry in enumerate(entries))
    names = [budget.name for budget in budgets]
    if len(set(names)) != len(names):
        raise ConfigError("budgets: names must be unique")
    pricing = document.get("pricing") or {}
    if not isinstance(pricing, dict):
        raise ConfigError("pricing: must be a mapping of model to prices")
    try:
        prices = parse_prices(pricing)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return FileConfig(budgets=budgets, pricing=prices)


def load_config(path: Path | None) -> FileConfig:
    if path is None:
        return FileConfig()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return parse_config(document)
