"""The durable ledger: SQLAlchemy tables, Alembic migrations and the store."""

from exporter.ledger.engine import make_engine, make_read_engine
from exporter.ledger.migrate import migrate
from exporter.ledger.store import Ledger

__all__ = ["Ledger", "make_engine", "make_read_engine", "migrate"]
