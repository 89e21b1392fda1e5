"""`orchestrator-exporter import-logs`: AgentLogger folders -> events -> the exporter's HTTP API."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exporter.client import ExporterClient
from exporter.dialects.agent_logs import AgentLogReader, agent_folders

log = logging.getLogger(__name__)


def parse_zone(name: str | None) -> tzinfo:
    """An IANA zone name, or this machine's zone when None."""
    if name is None:
        zone = datetime.now().astimezone().tzinfo
        assert zone is not None
        return zone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--tz: unknown time zone {name!r}") from None


class LogImport:
    """Reads every agent folder below `root` and sends what is new; ids make repeats harmless."""

    def __init__(self, root: Path, *, url: str, token: str | None, zone: tzinfo,
                 source: str | None = None) -> None:
        self.root = root
        self.zone = zone
        self.source = source
        self.client = ExporterClient(url, token)
        self.readers: dict[Path, AgentLogReader] = {}

    def read_all(self) -> int:
        """Send the lines written since the last call; how many events that made."""
        count = 0
        for folder in agent_folders(self.root):
            reader = self.readers.get(folder)
            if reader is None:
                reader = self.readers[folder] = AgentLogReader(folder, self.zone, self.source)
            for event in reader.read():
                self.client.emit(event)
                count += 1
        return count

    def once(self) -> int:
        """One pass; exit code 0 when every event was acknowledged."""
        count = self.read_all()
        delivered = self.client.close()
        self._report(count)
        return 0 if delivered else 1

    def follow(self, interval: float) -> int:
        """Read again every `interval` seconds until SIGINT or SIGTERM."""
        stop = threading.Event()
        for handled in (signal.SIGINT, signal.SIGTERM):
            signal.signal(handled, lambda _number, _frame: stop.set())
        count = 0
        while True:
            count += self.read_all()
            self.client.flush(timeout=interval * 10)
            if stop.wait(interval):
                break
        delivered = self.client.close()
        self._report(count)
        return 0 if delivered else 1

    def _report(self, count: int) -> None:
        bad = sum(reader.bad_lines for reader in self.readers.values())
        log.info("%d agent folders, %d events: %d acknowledged, %d dropped; %d lines skipped",
                 len(self.readers), count, self.client.sent, self.client.dropped, bad)
