"""Schemathesis, driven by the exporter's own OpenAPI document, against a real exporter: every
endpoint, with the admin token and without one, a bounded number of cases. No answer is a 5xx,
every answer matches its documented schema and media type (errors: the error shape).

Left out: /api/v1/stream (it never ends: tests/test_stream_api.py) and the long poll
/api/v1/commands/next (it waits up to a minute: tests/test_control.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from streams import mixed_stream
from support import ExporterFactory

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
MAX_EXAMPLES = "15"


def schemathesis(url: str, workdir: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).with_name("schemathesis")
    argv = [str(binary), "run", f"{url}/openapi.json", "--checks", CHECKS,
            "--max-examples", MAX_EXAMPLES, "--seed", "7", "--request-timeout", "30",
            "--exclude-path", "/api/v1/stream", "--exclude-path", "/api/v1/commands/next",
            "--no-color"]
    for header in headers:
        argv += ["-H", header]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False,
                          cwd=workdir)


@pytest.mark.parametrize("authenticated", [True, False])
def test_every_endpoint_answers_in_its_documented_shape(exporter_factory: ExporterFactory,
                                                        tmp_path: Path, authenticated: bool):
    exporter = exporter_factory(env={"EXPORTER_API_RATE_PER_SECOND": "100000",
                                     "EXPORTER_API_BURST": "1000000"})
    for batch in mixed_stream(total=500, batch_size=250).batches:
        assert exporter.post_events(batch).status_code == 200
    headers = [f"Authorization: Bearer {exporter.token}"] if authenticated else []
    run = schemathesis(exporter.url, tmp_path, *headers)
    summary = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert run.returncode == 0 and summary is not None, run.stdout[-6000:]
    generated, passed = map(int, summary.groups())
    assert generated == passed and generated >= 300, run.stdout[-3000:]
    operations = re.search(r"Tested: (\d+)", run.stdout)
    assert operations is not None and int(operations.group(1)) >= 25
