"""A throwaway PostgreSQL server: initdb into a temporary directory, one loopback port."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import psycopg

from .components import missing_component, require_binary
from .network import LOOPBACK, free_port
from .polling import wait_until
from .processes import ManagedProcess

SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; this system user owns the cluster when we are root.
SYSTEM_USER = "postgres"


class PostgresServer:
    """A PostgreSQL cluster of its own, trusting every loopback connection.

    Durability settings stay at their defaults (fsync on) because tests kill the exporter and
    expect its commits to survive; only memory is kept small.
    """

    def __init__(self, log_dir: Path) -> None:
        # resolve(): PATH may hold a symlink to initdb; its real directory holds `postgres` too.
        self.bin_dir = Path(require_binary("initdb", "postgresql")).resolve().parent
        self.run_as = _system_user_if_root()
        # Not under pytest's tmp dir: that one is private to root and the server user must enter.
        self.base_dir = Path(tempfile.mkdtemp(prefix="pytest-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "socket"
        self.log_path = log_dir / "postgres.log"
        self.port = free_port()
        self.process = ManagedProcess(
            self._server_argv(),
            log_path=self.log_path,
            name="postgres",
            cwd=self.base_dir,
            user=self.run_as,
            # SIGINT is the "fast" shutdown: SIGTERM would wait for clients that tests left open.
            stop_signal=signal.SIGINT,
        )

    def start(self, timeout: float = 30.0) -> PostgresServer:
        self.socket_dir.mkdir()
        if self.run_as is not None:
            shutil.chown(self.base_dir, self.run_as, self.run_as)
            shutil.chown(self.socket_dir, self.run_as, self.run_as)
        self._initdb()
        self.process.start()
        try:
            wait_until(self._accepts_connections, timeout, interval=0.1, describe="postgres")
        except TimeoutError as error:
            raise self.process.failure(str(error)) from None
        return self

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit psycopg connection, as CREATE/DROP DATABASE need."""
        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=SUPERUSER,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self) -> str:
        """Create a new empty database and return its name."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends the sessions a test's engine may still hold.
        with self.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self.process.stop(timeout=15.0)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _server_argv(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", f"listen_addresses={LOOPBACK}",
            "-c", f"unix_socket_directories={self.socket_dir}",
            "-c", "shared_buffers=16MB",
            "-c", "max_connections=50",
        ]  # fmt: skip

    def _initdb(self) -> None:
        argv = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            # Only initdb's own final flush: the server still runs with fsync on.
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        log_path = self.log_path.with_name("initdb.log")
        initdb = ManagedProcess(argv, log_path=log_path, cwd=self.base_dir, user=self.run_as)
        if initdb.start().wait(timeout=60.0) != 0:
            raise initdb.failure("initdb failed")

    def _accepts_connections(self) -> bool:
        self.process.check_running()
        try:
            with self.connect() as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True


def _system_user_if_root() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        missing_component(f"running as root and there is no {SYSTEM_USER!r} user for PostgreSQL")
    return SYSTEM_USER
