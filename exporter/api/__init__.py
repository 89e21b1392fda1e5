"""The HTTP API; it depends on the core, never the reverse."""

from exporter.api.app import create_app

__all__ = ["create_app"]
