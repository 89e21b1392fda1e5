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
    assert current_revision(engine) == "0007"
    def on_this_dialect(item: object, name: str | None, *_: object) -> bool:
        return engine.dialect.name == "postgresql" or name not in POSTGRESQL_ONLY

    with engine.connect() as connection:
        context = MigrationContext.configure(connection,
                                             opts={"include_object": on_this_dialect})
        differences = compare_metadata(context, metadata)
    assert differences == []
    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == "0007"


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
    assert current_revision(engine) == "0007"
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


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_0006_indexes_the_events_stored_before_it(tmp_path: Path, database: str,
                                                  request: pytest.FixtureRequest):
    """Events stored by an older exporter get their agent key, so an agent's history reads
    back whole after the upgrade (canonical spellings and aliases alike)."""
    from sqlalchemy import select, text

    from exporter.events import agent_key
    from exporter.ledger.schema import events

    url = request.getfixturevalue("fresh_postgres_url") if database == "postgresql" \
        else f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        migrate(engine, "0005")
        rows = [(1, "a", '{"type":"agent.created","agent_id":"a-1","role":"X"}'),
                (2, "b", '{"type":"agent_usage","agentId":"a-2","inputTokens":5}'),
                (3, "a", '{"type":"task.started","task_id":"t"}')]
        with engine.begin() as connection:
            for seq, source, payload in rows:
                connection.execute(text(
                    "INSERT INTO events (seq, source, type, ts, received, payload) "
                    "VALUES (:seq, :source, 'x', 0, 0, :payload)"),
                    {"seq": seq, "source": source, "payload": payload.encode()})
        migrate(engine)
        with engine.connect() as connection:
            keys = dict(connection.execute(select(events.c.seq, events.c.agent_key)).all())
        assert keys == {1: agent_key("a", "a-1"), 2: agent_key("b", "a-2"), 3: None}
    finally:
        engine.dispose()
