"""The Python orchestrator's AgentLogger folders, read from disk (`import-logs`).

    agent_logs/{task_id}/{agent_id[:8]}_{Name_Of_Agent}_{YYYYmmdd_HHMMSS}/
        tools.jsonl     tool_use {tool_name, tool_use_id, input} and tool_result {tool_use_id,
                        content, is_error} lines, paired by tool_use_id
        summary.jsonl   a SystemMessage line (its `message` a repr naming the model) and one
                        ResultMessage line per query {total_cost_usd, usage, duration_ms, ...};
                        none when the agent failed

Every timestamp is local time with no offset (`zone`). The folder names only the first eight
characters of the agent's id, and that is the agent id here. Every event gets an id made of the
folder and the line, so importing again adds nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final

from exporter.dialects.base import (
    Canonical,
    dollars,
    file_path_of,
    json_object,
    present,
    timestamp,
)

log = logging.getLogger(__name__)

VIA: Final = "orchestrator_logs"
FILES: Final = ("summary.jsonl", "tools.jsonl")
_FOLDER: Final = re.compile(r"([0-9A-Za-z-]{1,36})_(.+)_(\d{8}_\d{6})")
_TASK: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                          r"[0-9a-fA-F]{12}")
_MODEL: Final = re.compile(r"'model': '([^']{1,128})'")
ROLES: Final = ("ANALYST", "PLANNER", "BUILDER", "TESTER", "REVIEWER", "DOCUMENTER",
                "ORCHESTRATOR")
# ResultMessage `usage` keys -> canonical agent.usage fields.
_USAGE: Final = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
                 ("cache_read_input_tokens", "cache_read_tokens"),
                 ("cache_creation_input_tokens", "cache_creation_tokens"))


def agent_folders(root: Path) -> list[Path]:
    """Every folder below `root` (or `root` itself) that holds an agent's log files."""
    found = {path.parent for name in FILES for path in root.rglob(name)}
    return sorted(found)


def _role(name: str) -> str:
    words = name.upper().replace("-", "_").split("_")
    return next((role for role in ROLES if role in words), "CUSTOM")


@dataclass(slots=True)
class AgentLogReader:
    """One agent folder, read incrementally: complete lines only, from where it stopped."""

    folder: Path
    zone: tzinfo
    source: str | None = None
    agent_id: str = ""
    offsets: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    pending: dict[str, tuple[str, object, str | None]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)
    announced: bool = False
    model: str | None = None
    bad_lines: int = 0

    def __post_init__(self) -> None:
        match = _FOLDER.fullmatch(self.folder.name)
        self.agent_id = match.group(1) if match else self.folder.name[:128]

    def read(self) -> list[Canonical]:
        """The canonical events of the lines written since the last call."""
        events: list[Canonical] = []
        summary = list(self._new_lines("summary.jsonl"))
        self.model = self.model or next(
            (found.group(1) for _, line in summary if line.get("type") == "SystemMessage"
             and (found := _MODEL.search(str(line.get("message", "")))) is not None), None)
        if not self.announced:
            self.announced = True
            events.append(self._created())
        lines = [(self._result, number, line) for number, line in summary
                 if line.get("type") == "ResultMessage"]
        lines += [(self._tool, number, line) for number, line in self._new_lines("tools.jsonl")]
        for translate, number, line in lines:
            try:
                events.extend(translate(number, line))
            except ValueError as error:  # one bad line costs only itself
                self.bad_lines += 1
                log.warning("%s line %d skipped: %s", self.folder, number, error)
        return [self._sealed(event) for event in events]

    def _sealed(self, event: Canonical) -> Canonical:
        return {**event, "via": VIA, **present(source=self.source)}

    def _id(self, *parts: object) -> str:
        return ":".join(("logs", self.folder.name[:64], *map(str, parts)))[:128]

    def _created(self) -> Canonical:
        match = _FOLDER.fullmatch(self.folder.name)
        task = self.folder.parent.name
        when = None
        if match is not None:
            local = datetime.strptime(match.group(3), "%Y%m%d_%H%M%S")
            when = local.replace(tzinfo=self.zone).timestamp()
        return {"type": "agent.created", "id": self._id("created"), "agent_id": self.agent_id,
                "role": _role(match.group(2) if match else self.folder.name),
                **present(timestamp=when, model=self.model,
                          task_id=task if _TASK.fullmatch(task) else None)}

    def _result(self, number: int, line: dict[str, Any]) -> list[Canonical]:
        # Each ResultMessage is one query's usage; the orchestrator adds them up, so their
        # running sum is the agent's total, sent as totals (it counts once beside any other
        # source of the same agent).
        usage = line.get("usage") if isinstance(line.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        for key, name in _USAGE:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                self.totals[name] = self.totals.get(name, 0) + value
        cost = dollars(line.get("total_cost_usd"), "total_cost_usd")
        if cost is not None:
            self.totals["cost_usd"] = self.totals.get("cost_usd", 0.0) + cost
        when = present(timestamp=timestamp(line.get("timestamp"), self.zone))
        status = "failed" if line.get("is_error") is True else "completed"
        return [
            {**when, **self.totals, "type": "agent.usage", "id": self._id("result", number),
             "agent_id": self.agent_id, "totals": True, **present(model=self.model)},
            {**when, "type": "agent.status_changed", "id": self._id("status", number),
             "agent_id": self.agent_id, "status": status},
        ]

    def _tool(self, number: int, line: dict[str, Any]) -> list[Canonical]:
        use_id = line.get("tool_use_id")
        if not isinstance(use_id, str):
            return []
        if line.get("type") == "tool_use":
            self.pending[use_id] = (str(line.get("tool_name") or "unknown"),
                                    timestamp(line.get("timestamp"), self.zone),
                                    file_path_of(line.get("input")))
            return []
        if line.get("type") != "tool_result" or use_id not in self.pending:
            return []
        tool, started, file_path = self.pending.pop(use_id)
        ended = timestamp(line.get("timestamp"), self.zone)
        duration = ended - started if isinstance(ended, float) and isinstance(started, float) \
            else None
        return [{"type": "agent.tool_call", "id": self._id(use_id), "agent_id": self.agent_id,
                 "tool": tool, "outcome": "error" if line.get("is_error") is True else "success",
                 **present(timestamp=ended, duration_seconds=None if duration is None
                           else max(0.0, duration), file_path=file_path)}]

    def _new_lines(self, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
        path = self.folder / name
        try:
            with path.open("rb") as handle:
                handle.seek(self.offsets.get(name, 0))
                data = handle.read()
        except FileNotFoundError:
            return
        complete = data.rfind(b"\n") + 1  # a line still being written waits for its end
        self.offsets[name] = self.offsets.get(name, 0) + complete
        for raw_line in data[:complete].splitlines():
            self.lines[name] = number = self.lines.get(name, 0) + 1
            if not raw_line.strip():
                continue
            parsed = json_object(raw_line)
            if parsed is None:
                self.bad_lines += 1
                log.warning("%s line %d is not a JSON object; skipped", path, number)
                continue
            yield number, parsed
