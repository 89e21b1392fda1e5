"""Claude Code sessions as agents of the fleet: its hooks (`hooks`), its JSONL transcripts
(`transcripts`, read back by `importer`), and the roots a transcript may be read from (`paths`).

One session is one agent whose id is the session id; a sub-agent is an agent of its own,
`{session id}:{sub-agent id}`, named the same by hooks and transcripts, so both sources describe
one agent. Nothing past this package knows Claude Code's field names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from exporter.dialects.base import label_name

VIA_HOOKS: Final = "claude_code_hooks"
VIA_TRANSCRIPTS: Final = "claude_code_transcripts"
# A sub-agent whose type no source names.
SUBAGENT_ROLE: Final = "SUBAGENT"
# The tool that starts a sub-agent: `Agent` since Claude Code 2.1, `Task` before.
SUBAGENT_TOOLS: Final = frozenset({"Agent", "Task"})
MAX_ID: Final = 128
# Session and sub-agent ids: UUIDs and `a` + 16 hex digits in practice; at most 64 characters so
# that `{session}:{sub-agent}` is a valid agent id.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_\-.@+#]{1,64}")


def subagent_id(session_id: str, agent_id: str) -> str:
    """The agent id of a session's sub-agent (a session id is at most 64 characters)."""
    return f"{session_id}:{agent_id}"


def role_of(agent_type: object, default: str = SUBAGENT_ROLE) -> str:
    """A sub-agent's type as a role (`general-purpose` -> `GENERAL-PURPOSE`), or `default`."""
    if not isinstance(agent_type, str) or not agent_type.strip():
        return default
    return label_name(agent_type.strip()).upper()


def event_id(prefix: str, *parts: object) -> str:
    """An idempotency key made of its parts; hashed when too long for the contract."""
    key = ":".join((prefix, *map(str, parts)))
    if len(key) <= MAX_ID:
        return key
    return f"{prefix}:{hashlib.blake2b(key.encode(), digest_size=20).hexdigest()}"
