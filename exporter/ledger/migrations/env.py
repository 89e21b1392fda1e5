"""Alembic environment: the engine comes from the caller (`exporter.ledger.migrate`)."""

from __future__ import annotations

from alembic import context

from exporter.ledger.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
