"""One typed settings object, read from `EXPORTER_*` variables and command-line flags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A name of the event contract (events.md): what a label value may hold.
_NAME = r"^[A-Za-z0-9 _\-.:/@+#]{1,128}$"
# Variables no longer read, and what to set instead: one still set stops the program, since
# ignoring it would silently change what the user asked for.
REMOVED: Final = {
    "EXPORTER_OTLP_DEFAULT_ROLE": "set EXPORTER_CLAUDE_CODE_ROLE instead, the one role of a "
    "Claude Code session whether it arrives by OTLP, hooks or transcripts",
}


class Settings(BaseSettings):
    """Validated once at start; a bad value stops the program with one clear line."""

    model_config = SettingsConfigDict(env_prefix="EXPORTER_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=1, le=65535)
    database_url: str = "sqlite:///orchestrator-exporter.db"
    config_file: Path | None = None
    admin_token: SecretStr | None = None
    # More tokens, with names and roles (exporter/tokens.py): a JSON list, and a YAML file read
    # again when it changes.
    tokens: list[dict[str, Any]] | None = None
    tokens_file: Path | None = None
    # /metrics open (Prometheus' usual setup), or only to tokens that may read.
    metrics_require_token: bool = False
    # Control and read endpoints, per token (or client address without one); ingest has its own
    # back-pressure (503 busy).
    api_rate_per_second: float = Field(default=20.0, gt=0, le=100_000)
    api_burst: int = Field(default=40, ge=1, le=1_000_000)
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: list[str] = []
    # A command delivered and not answered within this is delivered again (same id).
    command_redeliver_seconds: float = Field(default=60.0, gt=0, le=86_400)
    label_value_limit: int = Field(default=100, ge=1, le=100_000)
    live_agent_limit: int = Field(default=5000, ge=0, le=1_000_000)
    # FULL survives power loss; NORMAL survives a crashed or killed process, and is faster.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # The SQLite ledger never grows past this many bytes: writes then get 503 `ledger_full`, as
    # on a full disk, and resume once pruning frees space. None: only the disk limits it.
    sqlite_max_bytes: int | None = Field(default=None, ge=1024 * 1024)
    # SQLite's page cache of each writing connection, in MiB: memory the process holds once
    # the ledger is larger than it (docs/operations.md, "What memory holds").
    sqlite_cache_mib: int = Field(default=16, ge=1, le=4096)
    # Blocks of this many KiB and more are mapped and unmapped on their own, so memory freed
    # after a large table is given back (exporter/heap.py); 0 leaves glibc's moving threshold.
    malloc_mmap_threshold_kib: int = Field(default=128, ge=0, le=32 * 1024)  # glibc refuses more
    # A thread waiting for the GIL in the serving process gets it after this long at most
    # (CPython's: 5 ms); a scrape waits at each hop between threads (exporter/interpreter.py).
    gil_switch_interval_ms: float = Field(default=1.0, ge=0.1, le=100.0)
    # Raw events and ended agents, tasks and runs older than this leave the ledger (counters and
    # per-day sums stay); 0 keeps everything. With an archive directory, pruned events are first
    # written there as gzip NDJSON per day, and archive files older than archive_days removed.
    retention_days: int = Field(default=90, ge=0, le=36_500)
    archive_dir: Path | None = None
    archive_days: int = Field(default=365, ge=1, le=36_500)
    retention_interval_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    # Native TLS: both files, PEM (docs/operations.md); neither serves plain HTTP.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Aggregates reach the ledger this often; a restart re-applies at most this much of events.
    checkpoint_seconds: float = Field(default=1.0, gt=0, le=3600)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=10_000, ge=1)
    # Counters never go down: one usage event claiming absurd tokens would inflate the cost for
    # good, so an operator may refuse more than this many tokens of one kind in one event.
    max_event_tokens: int = Field(default=1_000_000_000, ge=1, le=1_000_000_000)
    # Processes that decode and validate large ingest bodies beside the server's own GIL. Two:
    # batches arriving together are parsed side by side (docs/benchmarks.md: +10% events/s).
    parse_workers: int = Field(default=2, ge=0, le=64)
    # The live stream (/api/v1/stream, /api/v1/ws): connections at once; events buffered for a
    # subscriber before it is cut off as too slow (it resumes from where it was); the quiet time
    # after which a heartbeat is sent.
    stream_max_subscribers: int = Field(default=100, ge=0, le=10_000)
    stream_buffer_events: int = Field(default=10_000, ge=100, le=1_000_000)
    stream_heartbeat_seconds: float = Field(default=15.0, gt=0, le=3600)
    # Connections at once (open long polls and streams too): each holds memory, so past this a
    # request gets the server's plain 503 before it reaches the API (uvicorn's limit_concurrency,
    # which counts the asking connection: 1 would refuse everything).
    max_connections: int = Field(default=1000, ge=2, le=100_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Claude Code (docs/integrations.md): the role of a session that names none, whichever way
    # it arrives (OTLP, hooks, transcripts: one session seen two ways keeps one role), and the
    # directories its transcripts may be read from (context-window fill); none: never read.
    claude_code_role: str = Field(default="CLAUDE_CODE", pattern=_NAME)
    transcript_roots: list[Path] = []
    # OTLP (Claude Code's telemetry, docs/integrations.md): what a session is when its resource
    # attributes (orchestrator.source, .task_id) do not say, and which signal counts its
    # cost and tokens: the cost and token metrics, or the api_request events.
    otlp_default_source: str = Field(default="default", pattern=_NAME)
    otlp_default_task_id: str | None = Field(default=None, pattern=_NAME)
    otlp_usage_from: Literal["metrics", "events"] = "metrics"

    @model_validator(mode="before")
    @classmethod
    def _nothing_removed(cls, data: Any) -> Any:
        for name in os.environ:
            if name.upper() in REMOVED:
                raise ValueError(f"{name.upper()} is no longer read: {REMOVED[name.upper()]}")
        return data

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("EXPORTER_TLS_CERT_FILE and EXPORTER_TLS_KEY_FILE go together")
        for path in (self.tls_cert_file, self.tls_key_file):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file")
        return self

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value

    @field_validator("transcript_roots")
    @classmethod
    def _roots_exist(cls, value: list[Path]) -> list[Path]:
        roots = [root.expanduser() for root in value]
        for root in roots:
            if not root.is_absolute() or not root.is_dir():
                raise ValueError(f"{root} is not an absolute path to a directory")
        return roots

    @field_validator("config_file", "tokens_file")
    @classmethod
    def _config_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value
