"""Finding the real components the integration tests run, and what to do when one is missing."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

# Debian keeps the PostgreSQL server binaries out of PATH, one directory per major version.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def find_binary(name: str) -> str | None:
    """The path of executable `name`: PATH first, then the sbin and PostgreSQL directories."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ["/usr/sbin", "/sbin", *_postgres_bin_dirs()]:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _postgres_bin_dirs() -> list[str]:
    """Newest major version first, so that a machine with several uses the newest."""
    directories = glob.glob(POSTGRES_BIN_GLOB)
    return sorted(directories, key=_major_version, reverse=True)


def _major_version(directory: str) -> int:
    version = Path(directory).parent.name
    return int(version) if version.isdigit() else 0


def missing_component(message: str) -> NoReturn:
    """Fail under CI, skip elsewhere: the one rule for a component this machine does not have.

    CI must run every integration test, so a missing component there is a broken environment; on a
    developer's machine it is only a reason to run fewer tests.
    """
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{message} (CI=true: integration components are required)", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, package: str | None = None) -> str:
    """The path of executable `name`, or skip/fail the test by `missing_component`."""
    found = find_binary(name)
    if found is None:
        hint = f" (Debian package {package})" if package else ""
        missing_component(f"executable {name!r} not found{hint}")
    return found
