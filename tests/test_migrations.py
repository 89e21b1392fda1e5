"""Alembic migrations create exactly the tables the code uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from exporter.ledger import make_engine, migrate
from exporter.ledger.migrate import current_revision
from exporter.ledger.schema import POSTGRESQL_ONLY, metadata


def assert_schema_matches_code(engine: Engine) -> None:
    migrate(engine)
    assert current_revision(engine) == "0006"
    def on_this_dialect(item: object, name: str | None, *_: object) -> bool:
        return engine.dialect.name == "postgresql" or name not in POSTGRESQL_ONLY

    with engine.connect() as connection:
        context = MigrationContext.configure(connection,
                                             opts={"include_object": on_this_dialect})
        differences = compare_metadata(context, metadata)
    assert differences == []
    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == "0006"


def test_migrations_match_the_schema_on_sqlite(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert_schema_matches_code(engine)
    finally:
        engine.dispose()


@pytest.mark.integration
def test_migrations_match_the_schema_on_postgresql(fresh_postgres_url: str):
    engine = make_engine(fresh_postgres_url)
    try:
        assert_schema_matches_code(engine)
    finally:
        engine.dispose()


def test_migrate_command_prepares_a_ledger(tmp_path: Path):
    database = tmp_path / "cli.db"
    result = subprocess.run([sys.executable, "-m", "exporter", "migrate", "--database-url",
                             f"sqlite:///{database}"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    engine = make_engine(f"sqlite:///{database}")
    assert current_revision(engine) == "0006"
    engine.dispose()


def test_bad_settings_stop_the_program_with_one_clear_line(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "exporter", "serve", "--database-url",
                             "mysql://nope"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "orchestrator-exporter: invalid setting EXPORTER_DATABASE_URL: Value error, must start "
        "with sqlite:// or postgresql://"]
    config = tmp_path / "bad.yml"
    config.write_text("budgets: [{name: x, limit_usd: -1, period: day}]")
    result = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "budgets[0].limit_usd: must be a positive number" in result.stderr
