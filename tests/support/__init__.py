"""Shared test support: real components on free loopback ports, stopped after each test.

Test modules import from here as `support` (pytest puts `tests/` on sys.path); the fixtures that
use these helpers live in tests/conftest.py.
"""

from .alertmanager import AlertmanagerFactory, AlertmanagerServer
from .components import find_binary, missing_component, require_binary
from .exporter import ExporterFactory, ExporterProcess, write_tokens_file
from .metrics import parse_metrics, sample_value
from .network import LOOPBACK, free_port, http_client, wait_http
from .node import node_script
from .polling import wait_until
from .postgres import PostgresServer
from .processes import ManagedProcess, ProcessFailedError
from .prometheus import PrometheusFactory, PrometheusQueryError, PrometheusServer
from .slack import SlackMessage, SlackReceiver

__all__ = [
    "LOOPBACK",
    "AlertmanagerFactory",
    "AlertmanagerServer",
    "ExporterFactory",
    "ExporterProcess",
    "ManagedProcess",
    "PostgresServer",
    "ProcessFailedError",
    "PrometheusFactory",
    "PrometheusQueryError",
    "PrometheusServer",
    "SlackMessage",
    "SlackReceiver",
    "find_binary",
    "free_port",
    "http_client",
    "missing_component",
    "node_script",
    "parse_metrics",
    "require_binary",
    "sample_value",
    "wait_http",
    "wait_until",
    "write_tokens_file",
]
