"""`orchestrator-exporter import-transcripts`: Claude Code's JSONL transcripts -> usage events ->
the exporter's HTTP API, again and again with nothing counted twice.

Each message is one `agent.usage` whose id is its `message.id` and `requestId`: importing again,
or a resumed session's file that repeats its ancestor's messages, adds nothing. Per agent, an
`agent.created` (a session's role from `--role`, a sub-agent's from its type) and, once its
transcripts have been quiet for an hour, `completed`: history does not stay live.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from exporter.claude_code import (
    ID_PATTERN,
    VIA_TRANSCRIPTS,
    event_id,
    role_of,
    subagent_id,
)
from exporter.claude_code.paths import PathRefusedError, TranscriptRoots
from exporter.claude_code.transcripts import (
    MessageUsage,
    better,
    context_limit,
    json_lines,
    message_usage,
)
from exporter.client import ExporterClient, InvalidEventError
from exporter.dialects.base import Canonical, present
from exporter.pricing import PriceTable, load_price_table

log = logging.getLogger(__name__)

# A transcript written to this recently may still be streaming its last message: a message
# whose lines carry no stop_reason yet is left for the next run (its output is not final).
SETTLE_SECONDS: Final = 60.0
# An agent whose transcripts have been quiet this long has ended.
ENDED_AFTER_SECONDS: Final = 3600.0
# Steps up a sidechain's parent links (old transcripts: sub-agent lines in the session's file).
MAX_PARENT_STEPS: Final = 100_000


@dataclass(slots=True)
class _Agent:
    """What the transcripts say of one agent."""

    agent_id: str
    main: bool
    order: int
    kind: str | None = None  # a sub-agent's type
    model: str | None = None
    first: str | None = None
    last: str | None = None
    written: float = 0.0  # the newest modification time of its files
    context: int = 0  # the largest prompt it sent


@dataclass(slots=True)
class _Transcript:
    """One file's lines, as far as usage goes."""

    path: Path
    written: float
    session: str | None
    kind: str | None = None  # a sub-agent's type, from its meta.json
    last_key: str | None = None  # its last assistant message
    parents: dict[str, tuple[str | None, bool]] = field(default_factory=dict)


@dataclass(slots=True)
class Reading:
    """Everything read below a directory, in file order."""

    agents: dict[str, _Agent] = field(default_factory=dict)
    messages: dict[str, tuple[str, MessageUsage]] = field(default_factory=dict)  # key -> agent
    compactions: list[Canonical] = field(default_factory=list)
    files: int = 0
    refused: int = 0
    bad_lines: int = 0
    deferred: int = 0


class TranscriptReader:
    """Reads the transcripts below `directory` (within `roots`) into a Reading."""

    def __init__(self, directory: Path, roots: TranscriptRoots, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.roots = roots
        self.clock = clock
        self.reading = Reading()

    def read(self) -> Reading:
        """Read every transcript once; a file outside the roots is refused and counted."""
        for path in self.roots.transcripts(self.directory):
            try:
                descriptor = self.roots.open(path)
            except PathRefusedError as error:
                self.reading.refused += 1
                log.warning("refused: %s", error)
                continue
            with os.fdopen(descriptor, "rb") as handle:
                transcript = _Transcript(path, os.fstat(handle.fileno()).st_mtime,
                                         _session_of(path), _meta_type(self.roots, path))
                self._file(transcript, handle.read())
        return self.reading

    def _file(self, transcript: _Transcript, data: bytes) -> None:
        self.reading.files += 1
        bad = 0
        for _, line in json_lines(data):
            if line is None:
                bad += 1
            else:
                self._line(transcript, line)
        if bad:
            self.reading.bad_lines += bad
            log.warning("%s: %d lines are not JSON objects; skipped", transcript.path, bad)
        self._settle(transcript)

    def _line(self, transcript: _Transcript, line: Mapping[str, Any]) -> None:
        uuid, parent = line.get("uuid"), line.get("parentUuid")
        if isinstance(uuid, str):
            transcript.parents[uuid] = (parent if isinstance(parent, str) else None,
                                        line.get("isSidechain") is True)
        session = line.get("sessionId")
        session = session if isinstance(session, str) and ID_PATTERN.fullmatch(session) \
            else transcript.session
        if session is None:
            return
        if line.get("type") == "user":
            self._spawned(session, line.get("toolUseResult"))
            return
        if line.get("type") == "system" and line.get("subtype") == "compact_boundary":
            self._compaction(transcript, session, line)
            return
        usage = message_usage(line)
        agent = self._agent_of(transcript, session, line, usage)
        if usage is None or agent is None:
            return
        kept = self.reading.messages.get(usage.key)
        if kept is None:
            self.reading.messages[usage.key] = (agent.agent_id, usage)
        else:  # a later line of the message, or its copy in a forked session's file
            self.reading.messages[usage.key] = (kept[0], better(kept[1], usage))
            agent = self.reading.agents[kept[0]]
        transcript.last_key = usage.key
        agent.model = agent.model or usage.model
        # Lines are not always in time order: the earliest and the latest, not the ends.
        stamps = [stamp for stamp in (agent.first, agent.last, usage.timestamp) if stamp]
        agent.first, agent.last = (min(stamps), max(stamps)) if stamps else (None, None)
        agent.written = max(agent.written, transcript.written)
        agent.context = max(agent.context, usage.context_tokens)

    def _agent_of(self, transcript: _Transcript, session: str, line: Mapping[str, Any],
                  usage: MessageUsage | None) -> _Agent | None:
        if usage is None:
            return None
        if not usage.sidechain:
            return self._agent(session, main=True)
        name = usage.agent or _sidechain_root(transcript, line)
        if name is None or ID_PATTERN.fullmatch(name) is None:
            return None
        agent = self._agent(subagent_id(session, name), main=False)
        kind = line.get("attributionAgent")  # the sub-agent's type, on newer lines
        agent.kind = agent.kind or transcript.kind or (kind if isinstance(kind, str) else None)
        return agent

    def _agent(self, agent_id: str, *, main: bool) -> _Agent:
        agent = self.reading.agents.get(agent_id)
        if agent is None:
            agent = self.reading.agents[agent_id] = _Agent(agent_id, main,
                                                           len(self.reading.agents))
        return agent

    def _spawned(self, session: str, result: object) -> None:
        """An Agent call's answer names its sub-agent's id and type."""
        if not isinstance(result, Mapping):
            return
        name, kind = result.get("agentId"), result.get("agentType")
        if isinstance(name, str) and ID_PATTERN.fullmatch(name) and isinstance(kind, str):
            agent = self.reading.agents.get(subagent_id(session, name))
            if agent is not None:
                agent.kind = agent.kind or kind
            else:
                self._agent(subagent_id(session, name), main=False).kind = kind

    def _compaction(self, transcript: _Transcript, session: str, line: Mapping[str, Any]) -> None:
        uuid, meta = line.get("uuid"), line.get("compactMetadata")
        meta = meta if isinstance(meta, Mapping) else {}
        if not isinstance(uuid, str):
            return
        trigger, before = meta.get("trigger"), meta.get("preTokens")
        agent = session
        if line.get("isSidechain") is True and isinstance(line.get("agentId"), str):
            agent = subagent_id(session, str(line["agentId"]))
        self.reading.compactions.append({
            "type": "log.entry", "id": event_id("cctx", uuid, "compaction"), "level": "info",
            "agent_id": agent, **present(timestamp=line.get("timestamp")),
            "message": f"context compaction ({trigger if trigger in ('auto', 'manual') else '?'})"
            + (f", {before} tokens before" if isinstance(before, int) else "")})

    def _settle(self, transcript: _Transcript) -> None:
        """A file still being written: its last message waits if no line of it is final."""
        key = transcript.last_key
        if key is None or self.clock() - transcript.written >= SETTLE_SECONDS:
            return
        kept = self.reading.messages.get(key)
        if kept is not None and not kept[1].complete:
            del self.reading.messages[key]
            self.reading.deferred += 1


def _session_of(path: Path) -> str | None:
    """The session a file belongs to: its name (`<session>.jsonl`), or the session folder a
    sub-agent's file lies in (`<session>/subagents/...`)."""
    parts = path.parts
    if "subagents" in parts:
        index = len(parts) - 1 - parts[::-1].index("subagents")
        candidate = parts[index - 1] if index > 0 else ""
    else:
        candidate = path.stem
    return candidate if ID_PATTERN.fullmatch(candidate) else None


def _sidechain_root(transcript: _Transcript, line: Mapping[str, Any]) -> str | None:
    """An old transcript's sidechain (sub-agent) has no agentId: its first line names it."""
    current = line.get("uuid")
    if not isinstance(current, str):
        return None
    for _ in range(MAX_PARENT_STEPS):
        parent, _sidechain = transcript.parents.get(current, (None, False))
        if parent is None or not transcript.parents.get(parent, (None, False))[1]:
            return current
        current = parent
    return current


def _meta_type(roots: TranscriptRoots, path: Path) -> str | None:
    """A sub-agent's type from its `agent-<id>.meta.json`, when there is one."""
    if not path.name.startswith("agent-"):
        return None
    meta = path.with_suffix(".meta.json")
    try:
        descriptor = roots.open(meta)
    except PathRefusedError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        try:
            document = orjson.loads(handle.read(64 * 1024))
        except orjson.JSONDecodeError:
            return None
    kind = document.get("agentType") if isinstance(document, dict) else None
    return kind if isinstance(kind, str) else None


def transcript_events(reading: Reading, *, role: str, prices: PriceTable,
                      now: float) -> Iterator[Canonical]:
    """The canonical events of a Reading: each agent's `agent.created` before its usage."""
    used = {agent for agent, _ in reading.messages.values()}
    agents = sorted((agent for agent in reading.agents.values() if agent.agent_id in used),
                    key=lambda agent: agent.order)
    for agent in agents:
        window = context_limit(agent.model, agent.context, prices)
        price = prices.lookup(agent.model) if agent.model else None
        wider = window if price is not None and window > price.context_window else None
        yield {"type": "agent.created", "id": event_id("cctx", agent.agent_id, "created"),
               "agent_id": agent.agent_id, "role": role if agent.main else role_of(agent.kind),
               **present(model=agent.model, timestamp=agent.first,
                         context_limit_tokens=wider)}
    for key, (agent_id, usage) in reading.messages.items():
        yield {"type": "agent.usage", "id": event_id("cctx", key), "agent_id": agent_id,
               **present(timestamp=usage.timestamp), **usage.usage_fields()}
    yield from reading.compactions
    for agent in agents:
        if now - agent.written >= ENDED_AFTER_SECONDS:
            yield {"type": "agent.status_changed", "agent_id": agent.agent_id,
                   "id": event_id("cctx", agent.agent_id, "completed"), "status": "completed",
                   **present(timestamp=agent.last)}


class TranscriptImport:
    """Reads the transcripts below `directory` and sends their events; ids make repeats
    harmless."""

    def __init__(self, directory: Path, roots: TranscriptRoots, *, url: str, token: str | None,
                 role: str, prices: PriceTable, source: str | None = None) -> None:
        self.reader = TranscriptReader(directory, roots)
        self.client = ExporterClient(url, token)
        self.role = role
        self.prices = prices
        self.source = source

    def run(self) -> int:
        """One pass; exit code 0 when every event was acknowledged."""
        reading = self.reader.read()
        count = invalid = 0
        for event in transcript_events(reading, role=self.role, prices=self.prices,
                                       now=time.time()):
            try:
                self.client.emit({**event, "via": VIA_TRANSCRIPTS,
                                  **present(source=self.source)})
                count += 1
            except InvalidEventError as error:
                invalid += 1
                log.warning("event %s not sent: %s", event.get("id"), error)
        delivered = self.client.close()
        log.info("%d transcripts (%d refused), %d agents, %d messages: %d events, %d "
                 "acknowledged, %d dropped, %d invalid; %d lines skipped, %d messages left for "
                 "the next run", reading.files, reading.refused, len(reading.agents),
                 len(reading.messages), count, self.client.sent, self.client.dropped, invalid,
                 reading.bad_lines, reading.deferred)
        return 0 if delivered and not invalid else 1


def add_parser(commands: Any) -> None:
    """Register `import-transcripts` with the CLI's subcommands."""
    parser = commands.add_parser(
        "import-transcripts", help="send Claude Code's JSONL transcripts (~/.claude/projects) as "
        "usage per session and model; again adds nothing")
    parser.add_argument("directory", help="~/.claude/projects, a project's folder or a session's")
    parser.add_argument("--url", default="http://127.0.0.1:8088")
    parser.add_argument("--token", default=None, help="bearer token (EXPORTER_ADMIN_TOKEN)")
    parser.add_argument("--source", default=None, help="the orchestrator instance's name")
    parser.add_argument("--role", default=None, help="the sessions' role (default "
                        "EXPORTER_CLAUDE_CODE_ROLE: CLAUDE_CODE); sub-agents take their type")


def run(arguments: argparse.Namespace) -> int:
    """`import-transcripts DIR`: refused (exit 2) when DIR lies outside
    EXPORTER_TRANSCRIPT_ROOTS (when set); files whose real path leaves DIR are skipped."""
    from exporter.config import load_config
    from exporter.settings import Settings

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    directory = Path(os.path.abspath(arguments.directory))
    if not directory.is_dir():
        print(f"orchestrator-exporter: {directory} is not a directory", file=sys.stderr)
        return 2
    try:
        if settings.transcript_roots:
            TranscriptRoots(settings.transcript_roots).resolve(directory)
    except PathRefusedError as error:
        print(f"orchestrator-exporter: refused: {error} (EXPORTER_TRANSCRIPT_ROOTS)",
              file=sys.stderr)
        return 2
    role = (arguments.role or settings.claude_code_role).upper()
    token = arguments.token or os.environ.get("EXPORTER_ADMIN_TOKEN")
    prices = load_price_table(load_config(settings.config_file).pricing)
    return TranscriptImport(directory, TranscriptRoots([directory]), url=arguments.url,
                            token=token, role=role, prices=prices, source=arguments.source).run()
