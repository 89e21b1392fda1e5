"""A ledger that cannot grow: writes get 503 `ledger_full`, nothing acknowledged is lost, /ready
tells, and writes resume once space is freed, without a restart.

The full disk is simulated with SQLite's max_page_count (EXPORTER_SQLITE_MAX_BYTES): the file
is capped just above its size, beside a ballast table the test frees later."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from support import ExporterFactory, http_client

BALLAST_BYTES = 4 * 1024 * 1024


def stored(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        return {row[0] for row in connection.execute("SELECT event_id FROM events")}


def test_a_full_ledger_refuses_loses_nothing_and_recovers(exporter_factory: ExporterFactory,
                                                          tmp_path: Path):
    database = tmp_path / "ledger.db"
    first = exporter_factory(database_url=f"sqlite:///{database}")
    first.process.stop()
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE ballast (data BLOB)")
        connection.executemany("INSERT INTO ballast VALUES (?)",
                               [(b"\0" * 65536,) for _ in range(BALLAST_BYTES // 65536)])
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    cap = database.stat().st_size + 512 * 1024
    exporter = exporter_factory(database_url=f"sqlite:///{database}",
                                env={"EXPORTER_SQLITE_MAX_BYTES": str(cap)})
    acknowledged: set[str] = set()
    refused = 0
    for index in range(200):  # about 6 MB of events: far more than the 512 KiB left
        batch = [{"id": f"e-{index}-{n}", "type": "log.entry", "level": "info",
                  "message": "x" * 1000} for n in range(30)]
        response = exporter.post_events(batch)
        if response.status_code == 200:
            acknowledged.update(event["id"] for event in batch)
            continue
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "ledger_full"
        assert response.headers["retry-after"] == "30"
        refused += 1
        if refused >= 3:
            break
    assert refused >= 3 and acknowledged, "the cap was never reached"
    with http_client() as client:
        ready = client.get(f"{exporter.url}/ready")
        assert ready.status_code == 503 and ready.json()["code"] == "ledger_full"
        assert client.get(f"{exporter.url}/health").status_code == 200  # alive, not ready
        assert client.get(f"{exporter.url}/metrics").status_code == 200
    assert acknowledged <= stored(database)

    with sqlite3.connect(database, timeout=30) as connection:  # space returns
        connection.execute("DELETE FROM ballast")
    deadline = time.monotonic() + 60
    while True:
        batch = [{"id": f"after-{n}", "type": "log.entry", "level": "info", "message": "back"}
                 for n in range(30)]
        response = exporter.post_events(batch)
        if response.status_code == 200:
            acknowledged.update(event["id"] for event in batch)
            break
        assert time.monotonic() < deadline, response.text
        time.sleep(0.5)
    with http_client() as client:
        assert client.get(f"{exporter.url}/ready").status_code == 200
    assert acknowledged <= stored(database)
    assert exporter.sample("orchestrator_exporter_events_accepted_total",
                           type="log.entry") == len(acknowledged)
    exporter.restart()  # and everything acknowledged is still counted after a restart
    assert exporter.sample("orchestrator_exporter_events_accepted_total",
                           type="log.entry") == len(acknowledged)


def test_postgresql_refusing_writes_is_503_and_writes_resume(
        exporter_factory: ExporterFactory, postgres_server: Any, fresh_postgres_url: str):
    database = fresh_postgres_url.rsplit("/", 1)[1]
    exporter = exporter_factory(database_url=fresh_postgres_url)
    assert exporter.post_events([{"id": "before", "type": "log.entry", "level": "info",
                                  "message": "m"}]).status_code == 200

    def refuse(read_only: bool) -> None:
        with postgres_server.connect() as admin:
            admin.execute(f"ALTER DATABASE {database} SET default_transaction_read_only = "
                          + ("on" if read_only else "off"))
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))

    refuse(True)
    answers = [exporter.post_events([{"id": f"refused-{n}", "type": "log.entry",
                                      "level": "info", "message": "m"}]) for n in range(3)]
    assert {answer.status_code for answer in answers} == {503}
    assert {answer.json()["code"] for answer in answers} <= {"ledger_unavailable"}
    with http_client() as client:
        ready = client.get(f"{exporter.url}/ready")
        assert ready.status_code == 503 and ready.json()["code"] == "ledger_unwritable"
    refuse(False)
    deadline = time.monotonic() + 60
    while (answer := exporter.post_events([{"id": "after", "type": "log.entry",
                                            "level": "info", "message": "m"}])
           ).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    with http_client() as client:
        assert client.get(f"{exporter.url}/ready").status_code == 200
    # Acknowledged: "before" and "after"; the refused ones were never stored.
    assert exporter.sample("orchestrator_exporter_events_accepted_total",
                           type="log.entry") == 2
