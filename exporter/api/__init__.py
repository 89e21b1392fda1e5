"""The HTTP API; it depends on the core, never the reverse.

`create_app` is imported on first use: a parse worker (`python -m exporter.api.parse_worker`)
loads this package too, and must not load the server with it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from exporter.api.app import create_app
        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
