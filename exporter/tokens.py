"""Bearer tokens with names and roles, stored as SHA-256 digests, rotated without a restart.

Roles and what they may do:

| role | may |
|---|---|
| `viewer` | read |
| `operator` | read, command |
| `ingest` | ingest events, take and answer commands (an orchestrator's token issues none) |
| `admin` | everything |

Tokens come from `EXPORTER_ADMIN_TOKEN` (named `admin`), from `EXPORTER_TOKENS` (a JSON list)
and from `EXPORTER_TOKENS_FILE` (YAML), each entry `{name, role, sha256}`: the file is read again
when it changes, so a token is added, rotated or revoked without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml

log = logging.getLogger(__name__)

Role = Literal["viewer", "operator", "ingest", "admin"]
Capability = Literal["read", "command", "ingest", "deliver", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "ingest", "admin")
CAPABILITIES: Final[dict[Role, frozenset[Capability]]] = {
    "viewer": frozenset({"read"}),
    "operator": frozenset({"read", "command"}),
    "ingest": frozenset({"ingest", "deliver"}),
    "admin": frozenset({"read", "command", "ingest", "deliver", "admin"}),
}
# The file is looked at no more often than this: a stat per request would cost more.
RELOAD_CHECK_SECONDS: Final = 1.0
_NAME: Final = re.compile(r"[A-Za-z0-9_.:@+\-]{1,64}")
_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


class TokenConfigError(ValueError):
    """A token entry is unusable; the message names the entry and the key at fault."""


@dataclass(frozen=True, slots=True)
class Token:
    """Who a request is: the token's name (shown in the audit trail) and its role."""

    name: str
    role: Role
    digest: bytes

    def may(self, capability: Capability) -> bool:
        return capability in CAPABILITIES[self.role]


def digest_of(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_tokens(entries: object, where: str) -> list[Token]:
    """Entries `{name, role, sha256}`; a bad one raises TokenConfigError naming it."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise TokenConfigError(f"{where}: must be a list of {{name, role, sha256}}")
    tokens = [_token(entry, f"{where}[{index}]") for index, entry in enumerate(entries)]
    names = [token.name for token in tokens]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TokenConfigError(f"{where}: names used twice: {', '.join(duplicates)}")
    return tokens


def _token(entry: object, where: str) -> Token:
    if not isinstance(entry, Mapping):
        raise TokenConfigError(f"{where}: must be a mapping with name, role and sha256")
    unknown = set(entry) - {"name", "role", "sha256"}
    if unknown:
        raise TokenConfigError(f"{where}: unknown keys {sorted(unknown)} (store the sha256 of a "
                               "token, never the token: `orchestrator-exporter token`)")
    name, role, digest = entry.get("name"), entry.get("role"), entry.get("sha256")
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise TokenConfigError(f"{where}.name: 1 to 64 of letters, digits and _ . : @ + -")
    if role not in ROLES:
        raise TokenConfigError(f"{where}.role: must be one of {', '.join(ROLES)}")
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest.lower()) is None:
        raise TokenConfigError(f"{where}.sha256: must be 64 hexadecimal digits")
    return Token(name, role, bytes.fromhex(digest))


def load_tokens_file(path: Path) -> list[Token]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise TokenConfigError(f"{path}: {error}") from None
    if not isinstance(document, dict) or set(document) - {"tokens"}:
        raise TokenConfigError(f"{path}: must be a mapping with one key, tokens")
    return parse_tokens(document.get("tokens"), f"{path}: tokens")


class TokenRegistry:
    """Finds the token of a request in constant time per known token; thread-safe."""

    def __init__(self, *, fixed: Iterable[Token], file: Path | None = None) -> None:
        self._fixed = list(fixed)
        self._file = file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._from_file: list[Token] = []
        if file is not None:
            self._from_file = load_tokens_file(file)  # at start, a bad file stops the program
            self._stamp = _stamp(file)
            self._checked = time.monotonic()
        self._check_names(self._from_file)

    @classmethod
    def from_settings(cls, *, admin_token: str | None, tokens: Any, tokens_file: Path | None,
                      also: Iterable[Token] = ()) -> TokenRegistry:
        """The tokens of the settings, and `also` those the process made for itself."""
        fixed = [*parse_tokens(tokens, "EXPORTER_TOKENS"), *also]
        if admin_token:
            fixed.insert(0, Token("admin", "admin", digest_of(admin_token)))
        return cls(fixed=fixed, file=tokens_file)

    @property
    def tokens(self) -> list[Token]:
        self._reload_if_changed()
        return [*self._fixed, *self._from_file]

    def authenticate(self, secret: str) -> Token | None:
        """The token whose digest matches; every known digest is compared, in constant time."""
        supplied = digest_of(secret)
        found = None
        for token in self.tokens:
            if hmac.compare_digest(token.digest, supplied):
                found = token
        return found

    def _reload_if_changed(self) -> None:
        if self._file is None or time.monotonic() - self._checked < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked = time.monotonic()
            stamp = _stamp(self._file)
            if stamp == self._stamp:
                return
            try:
                tokens = load_tokens_file(self._file)
                self._check_names(tokens)
            except TokenConfigError as error:  # a bad edit: keep serving with the last good set
                log.error("tokens file not reloaded, the previous tokens stay: %s", error)
                self._stamp = stamp
                return
            self._from_file, self._stamp = tokens, stamp
            log.info("tokens file reloaded: %d tokens", len(tokens))

    def _check_names(self, from_file: list[Token]) -> None:
        """One name, one token: the audit trail must tell them apart."""
        names = [token.name for token in (*self._fixed, *from_file)]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise TokenConfigError(f"token names used twice: {', '.join(twice)}")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size
