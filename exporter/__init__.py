"""orchestrator-exporter: Prometheus metrics for fleets of Claude agents."""

__version__ = "0.1.0"
