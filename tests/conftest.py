"""Fixtures that start real components on free loopback ports and stop them after the test.

    postgres_url          session   SQLAlchemy URL of a throwaway PostgreSQL server
    fresh_postgres_url    function  URL of a new empty database on that server
    prometheus_factory    function  (config, *, files, extra_args, tsdb) -> PrometheusServer
    alertmanager_factory  function  (config, *, extra_args) -> AlertmanagerServer
    slack_receiver        function  SlackReceiver standing in for a Slack incoming webhook
    exporter_factory      function  (*, database_url, config, token, env, ...) -> ExporterProcess
    orchestrator_loop     function  an asyncio loop in a thread, as an orchestrator's

A missing binary skips the test, or fails it when CI=true (`support.missing_component`).
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

import pytest
from support import (
    AlertmanagerFactory,
    AlertmanagerServer,
    ExporterFactory,
    ExporterProcess,
    PostgresServer,
    PrometheusFactory,
    PrometheusServer,
    SlackReceiver,
)
from support.prometheus import FileSource

DEFAULT_ADMIN_TOKEN = "test-admin-token"


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def _stop_all(components: Sequence[_Stoppable]) -> None:
    """Stop every component, newest first, even when stopping one of them fails."""
    errors: list[BaseException] = []
    for component in reversed(components):
        try:
            component.stop()
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]


def pytest_configure(config: pytest.Config) -> None:
    # A CI job timeout sends SIGTERM, which would end pytest without running any finalizer and
    # leave our servers running; as a KeyboardInterrupt it unwinds through the teardowns.
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _new_dir(parent: Path, prefix: str) -> Path:
    """A directory of its own for each component a test starts (a test may start several)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session: initdb costs seconds, a database does not."""
    server = PostgresServer(log_dir=tmp_path_factory.mktemp("postgres"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """`postgresql+psycopg://postgres@127.0.0.1:PORT/postgres`, shared by the session's tests."""
    return postgres_server.url()


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database for this test alone, dropped afterwards."""
    database = postgres_server.create_database()
    yield postgres_server.url(database)
    postgres_server.drop_database(database)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[PrometheusFactory]:
    servers: list[PrometheusServer] = []

    def start(
        config: str,
        *,
        files: Mapping[str, FileSource] | None = None,
        extra_args: Sequence[str] = (),
        tsdb: Path | None = None,
    ) -> PrometheusServer:
        server = PrometheusServer(
            _new_dir(tmp_path, "prometheus"), config, files=files, extra_args=extra_args,
            tsdb=tsdb,
        )
        servers.append(server)
        return server.start()

    yield start
    _stop_all(servers)


@pytest.fixture
def alertmanager_factory(tmp_path: Path) -> Iterator[AlertmanagerFactory]:
    servers: list[AlertmanagerServer] = []

    def start(config: str, *, extra_args: Sequence[str] = ()) -> AlertmanagerServer:
        workdir = _new_dir(tmp_path, "alertmanager")
        server = AlertmanagerServer(workdir, config, extra_args=extra_args)
        servers.append(server)
        return server.start()

    yield start
    _stop_all(servers)


@pytest.fixture
def slack_receiver() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def exporter_factory(tmp_path: Path) -> Iterator[ExporterFactory]:
    exporters: list[ExporterProcess] = []

    def start(
        *,
        database_url: str | None = None,
        config: str | Path | None = None,
        token: str = DEFAULT_ADMIN_TOKEN,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> ExporterProcess:
        workdir = _new_dir(tmp_path, "exporter")
        exporter = ExporterProcess(
            workdir,
            database_url=database_url or f"sqlite:///{workdir / 'ledger.db'}",
            token=token,
            config_path=_config_file(workdir, config),
            env=env,
            extra_args=extra_args,
        )
        exporters.append(exporter)
        return exporter.start(timeout)

    yield start
    _stop_all(exporters)


def _config_file(workdir: Path, config: str | Path | None) -> Path | None:
    """A config given as text is written to a file, since the exporter takes a path."""
    if config is None or isinstance(config, Path):
        return config
    path = workdir / "exporter.yml"
    path.write_text(config)
    return path


@pytest.fixture
def orchestrator_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as an orchestrator's would."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


async def _cancel_the_rest() -> None:
    """The orchestrator's tasks still running when its test ends: cancelled and awaited."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
