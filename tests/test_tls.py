"""Native TLS: with EXPORTER_TLS_CERT_FILE and EXPORTER_TLS_KEY_FILE the exporter serves HTTPS
only, with the documented self-signed certificate recipe."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import ManagedProcess, free_port, require_binary
from support.exporter import _exporter_environment

TOKEN = "tls-test-token-0123456789abcdef"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """The recipe of docs/operations.md."""
    openssl = require_binary("openssl", "openssl")
    cert, key = directory / "exporter.crt", directory / "exporter.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def test_https_with_a_self_signed_certificate(tmp_path: Path):
    cert, key = self_signed(tmp_path)
    port = free_port()
    process = ManagedProcess(
        [sys.executable, "-m", "exporter", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--database-url", f"sqlite:///{tmp_path / 'ledger.db'}"],
        log_path=tmp_path / "exporter.log", name="exporter", cwd=tmp_path,
        env=_exporter_environment(TOKEN, {
            "EXPORTER_TLS_CERT_FILE": str(cert), "EXPORTER_TLS_KEY_FILE": str(key)}))
    process.start()
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)),
                          timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    ready = client.get(f"https://127.0.0.1:{port}/ready")
                    break
                except httpx.TransportError:
                    process.check_running()
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert ready.status_code == 200
            posted = client.post(f"https://127.0.0.1:{port}/api/v1/events",
                                 json={"type": "task.submitted", "task_id": "t"},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
            assert posted.status_code == 200
        with httpx.Client(timeout=10) as plain, pytest.raises(httpx.TransportError):
            plain.get(f"http://127.0.0.1:{port}/ready")  # no plain HTTP beside HTTPS
        with httpx.Client(timeout=10) as unverified, pytest.raises(httpx.ConnectError):
            unverified.get(f"https://127.0.0.1:{port}/ready")  # a client must trust the cert
    finally:
        process.stop()


def test_one_tls_file_without_the_other_stops_the_exporter(tmp_path: Path):
    cert, _key = self_signed(tmp_path)
    answer = subprocess.run([sys.executable, "-m", "exporter", "serve", "--database-url",
                             f"sqlite:///{tmp_path / 'l.db'}"], capture_output=True, text=True,
                            timeout=60, env=_exporter_environment(TOKEN, {
                                "EXPORTER_TLS_CERT_FILE": str(cert)}), check=False)
    assert answer.returncode == 2
    assert "EXPORTER_TLS_CERT_FILE and EXPORTER_TLS_KEY_FILE go together" in answer.stderr
