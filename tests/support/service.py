"""What every component served over loopback HTTP has in common."""

from __future__ import annotations

from .network import LOOPBACK
from .processes import ManagedProcess


class HttpService:
    """A managed process listening on one loopback port."""

    def __init__(self, process: ManagedProcess, port: int) -> None:
        self.process = process
        self.port = port

    @property
    def address(self) -> str:
        """host:port, the form Prometheus and Alertmanager configs want."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def stop(self, timeout: float = 10.0) -> None:
        self.process.stop(timeout)
