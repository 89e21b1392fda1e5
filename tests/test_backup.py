"""backup and restore: a copy taken while the exporter serves (and ingests) is one consistent
state; restored into an empty ledger, every counter equals the original's. PostgreSQL: the
pg_dump / pg_restore recipe of docs/operations.md, proven the same way."""

from __future__ import annotations

import glob
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from streams import mixed_stream
from support import ExporterFactory, ExporterProcess

NDJSON = "application/x-ndjson"


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *argv], capture_output=True,
                          text=True, timeout=120, check=False)


def fleet_totals(exporter: ExporterProcess) -> dict[Any, float]:
    return {key: value for key, value in exporter.metrics().items()
            if key[0].startswith("orchestrator_") and not key[0].startswith(
                "orchestrator_exporter_") and key[0].endswith(("_total", "_count", "_sum",
                                                                "_bucket"))}


def reingested(exporter: ExporterProcess, target: ExporterProcess) -> None:
    import httpx
    with httpx.Client(timeout=60) as client:
        lines = client.get(f"{exporter.url}/api/v1/events/export",
                           headers={"Authorization": f"Bearer {exporter.token}"}
                           ).content.splitlines()
    for start in range(0, len(lines), 2_000):
        body = b"\n".join(lines[start:start + 2_000])
        assert target.post_events(body, content_type=NDJSON).status_code == 200


def test_a_backup_while_ingesting_restores_a_consistent_ledger(
        exporter_factory: ExporterFactory, tmp_path: Path):
    database = tmp_path / "live.db"
    live = exporter_factory(database_url=f"sqlite:///{database}")
    stream = mixed_stream(total=6_000, batch_size=200)
    for batch in stream.batches[:10]:
        assert live.post_events(batch).status_code == 200
    ingesting = threading.Thread(target=lambda: [live.post_events(batch)
                                                 for batch in stream.batches[10:]])
    ingesting.start()
    copy = tmp_path / "backup.db"
    answer = cli("backup", str(copy), "--database-url", f"sqlite:///{database}")
    ingesting.join()
    assert answer.returncode == 0, answer.stderr
    assert cli("backup", str(copy), "--database-url", f"sqlite:///{database}").returncode == 2

    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    answer = cli("restore", str(copy), "--database-url", restored_url)
    assert answer.returncode == 0, answer.stderr
    restored = exporter_factory(database_url=restored_url)
    # One consistent state: its counters are exactly those of its own events.
    rebuilt = exporter_factory()
    reingested(restored, rebuilt)
    assert fleet_totals(restored) == fleet_totals(rebuilt)
    assert fleet_totals(restored)
    # Restoring over a ledger that holds events is refused.
    again = cli("restore", str(copy), "--database-url", restored_url)
    assert again.returncode == 2 and "already holds events" in again.stderr


def test_a_quiet_backup_restores_every_counter(exporter_factory: ExporterFactory,
                                               tmp_path: Path):
    database = tmp_path / "live.db"
    live = exporter_factory(database_url=f"sqlite:///{database}")
    for batch in mixed_stream(total=3_000, batch_size=300).batches:
        assert live.post_events(batch).status_code == 200
    copy = tmp_path / "backup.db"
    assert cli("backup", str(copy), "--database-url", f"sqlite:///{database}").returncode == 0
    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    assert cli("restore", str(copy), "--database-url", restored_url).returncode == 0
    restored = exporter_factory(database_url=restored_url)
    assert fleet_totals(restored) == fleet_totals(live)
    assert cli("backup", str(tmp_path / "x.db"), "--database-url",
               "postgresql://u@127.0.0.1/db").returncode == 2


@pytest.mark.integration
def test_the_pg_dump_recipe_restores_every_counter(exporter_factory: ExporterFactory,
                                                   postgres_server: Any,
                                                   fresh_postgres_url: str, tmp_path: Path):
    live = exporter_factory(database_url=fresh_postgres_url)
    for batch in mixed_stream(total=3_000, batch_size=300).batches:
        assert live.post_events(batch).status_code == 200
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    source = fresh_postgres_url.replace("postgresql+psycopg://", "postgresql://")
    dump = tmp_path / "ledger.dump"
    subprocess.run([f"{binaries}/pg_dump", "--format=custom", f"--file={dump}", source],
                   check=True, timeout=120)
    target_name = postgres_server.create_database()
    try:
        target = postgres_server.url(target_name)
        subprocess.run([f"{binaries}/pg_restore", "--no-owner",
                        f"--dbname={target.replace('postgresql+psycopg://', 'postgresql://')}",
                        str(dump)], check=True, timeout=120)
        restored = exporter_factory(database_url=target)
        assert fleet_totals(restored) == fleet_totals(live)
        restored.process.stop()
    finally:
        postgres_server.drop_database(target_name)
