"""The structured part of the configuration: the YAML file given by `--config`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from exporter.events import MAX_NAME_LENGTH
from exporter.pricing import Price, parse_prices

PERIODS: Final = ("day", "week", "month")
SCOPE_KEYS: Final = ("role", "model", "task_type", "workflow")
ON_EXCEED: Final = ("alert", "pause", "cancel_new")
# A budget's name is a label value and part of the keys of the commands it issues.
BUDGET_NAME_LENGTH: Final = 48
BUDGET_NAME_PATTERN: Final = rf"[A-Za-z0-9_.\-]{{1,{BUDGET_NAME_LENGTH}}}"
_BUDGET_NAME: Final = re.compile(BUDGET_NAME_PATTERN)


class ConfigError(ValueError):
    """The config file is unusable; the message names the key at fault."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit over a calendar period, for usage matching every key of its scope."""

    name: str
    limit_usd: float
    period: str
    scope: tuple[tuple[str, str], ...] = ()
    # What crossing the limit does besides the alert: pause the scope, or cancel its new tasks.
    on_exceed: str = "alert"

    def matches(self, dimensions: dict[str, str]) -> bool:
        return all(dimensions.get(key) == value for key, value in self.scope)


@dataclass(frozen=True, slots=True)
class AlertAction:
    """A firing alert of this name becomes this command (docs/control.md)."""

    alert: str
    command: str
    ttl_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class AlertActions:
    """The Alertmanager webhook's mapping; off (no actions) by default."""

    actions: tuple[AlertAction, ...] = ()
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class FileConfig:
    """What the YAML file holds."""

    budgets: tuple[Budget, ...] = ()
    pricing: dict[str, Price] = field(default_factory=dict)
    alert_actions: AlertActions = AlertActions()


def parse_budget(entry: object, where: str) -> Budget:
    """One budget `{name, limit_usd, period, scope, on_exceed}`; ConfigError names the key."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with name, limit_usd and period")
    unknown = set(entry) - {"name", "limit_usd", "period", "scope", "on_exceed"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    name, limit, period = entry.get("name"), entry.get("limit_usd"), entry.get("period")
    if not isinstance(name, str) or _BUDGET_NAME.fullmatch(name) is None:
        raise ConfigError(f"{where}.name: 1 to 48 of letters, digits and _ . -")
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
        raise ConfigError(f"{where}.limit_usd: must be a positive number")
    if period not in PERIODS:
        raise ConfigError(f"{where}.period: must be one of {', '.join(PERIODS)}")
    scope = entry.get("scope") or {}
    if not isinstance(scope, dict) or set(scope) - set(SCOPE_KEYS):
        raise ConfigError(f"{where}.scope: may only hold {', '.join(SCOPE_KEYS)}")
    for key, value in scope.items():  # longer never matches: events' names are no longer
        if not 0 < len(str(value)) <= MAX_NAME_LENGTH:
            raise ConfigError(f"{where}.scope.{key}: 1 to {MAX_NAME_LENGTH} characters")
    # Roles fold to upper case in events too: `analyst` and `ANALYST` are one scope.
    pairs = tuple(sorted((str(key), str(value).upper() if key == "role" else str(value))
                         for key, value in scope.items()))
    on_exceed = entry.get("on_exceed", "alert")
    if on_exceed not in ON_EXCEED:
        raise ConfigError(f"{where}.on_exceed: must be one of {', '.join(ON_EXCEED)}")
    return Budget(name=name, limit_usd=float(limit), period=str(period), scope=pairs,
                  on_exceed=str(on_exceed))


def parse_config(document: object) -> FileConfig:
    """Check a loaded YAML document and turn it into a FileConfig."""
    if document is None:
        return FileConfig()
    if not isinstance(document, dict):
        raise ConfigError("the config file must be a YAML mapping")
    unknown = set(document) - {"budgets", "pricing", "alert_actions"}
    if unknown:
        raise ConfigError(f"unknown top-level keys {sorted(unknown)}")
    entries = document.get("budgets") or []
    if not isinstance(entries, list):
        raise ConfigError("budgets: must be a list")
    budgets = tuple(parse_budget(entry, f"budgets[{index}]")
                    for index, entry in enumerate(entries))
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
    return FileConfig(budgets=budgets, pricing=prices,
                      alert_actions=_alert_actions(document.get("alert_actions")))


# The commands an alert may become: those whose target its labels (or the fleet) can name.
ALERT_COMMANDS: Final = ("task.cancel", "agent.delete", "workflow.cancel", "fleet.pause")


def _alert_actions(section: object) -> AlertActions:
    if section is None:
        return AlertActions()
    if not isinstance(section, dict) or set(section) - {"dry_run", "actions"}:
        raise ConfigError("alert_actions: a mapping with dry_run and actions")
    dry_run = section.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ConfigError("alert_actions.dry_run: must be true or false")
    entries = section.get("actions") or []
    if not isinstance(entries, list):
        raise ConfigError("alert_actions.actions: must be a list")
    return AlertActions(tuple(_alert_action(index, entry)
                              for index, entry in enumerate(entries)), dry_run)


def _alert_action(index: int, entry: object) -> AlertAction:
    where = f"alert_actions.actions[{index}]"
    if not isinstance(entry, dict) or set(entry) - {"alert", "command", "ttl_seconds"}:
        raise ConfigError(f"{where}: a mapping with alert, command and ttl_seconds")
    alert, command, ttl = entry.get("alert"), entry.get("command"), entry.get("ttl_seconds", 300)
    if not isinstance(alert, str) or not alert:
        raise ConfigError(f"{where}.alert: the alert's name")
    if command not in ALERT_COMMANDS:
        raise ConfigError(f"{where}.command: one of {', '.join(ALERT_COMMANDS)}")
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= 86_400:
        raise ConfigError(f"{where}.ttl_seconds: a number above 0, at most 86400")
    return AlertAction(alert, str(command), float(ttl))


def load_config(path: Path | None) -> FileConfig:
    if path is None:
        return FileConfig()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return parse_config(document)
