"""Bad input gets a 4xx with the structured error body, nothing of it is stored, and the exporter
keeps serving."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import ExporterProcess, http_client

from exporter.settings import Settings

VALID = {"type": "agent.created", "agent_id": "a-1", "role": "BUILDER", "model": "claude-haiku-4-5"}
USAGE = {"type": "agent.usage", "agent_id": "a-1", "input_tokens": 10}

# (case name, body, content type, expected status, field named in the details or None)
CASES: list[tuple[str, Any, str, int, str | None]] = [
    ("malformed json", b'{"type": "agent.created", ', "application/json", 400, None),
    ("empty body", b"", "application/json", 400, None),
    ("invalid utf-8", b'{"type": "agent.created", "agent_id": "\xff\xfe", "role": "X"}',
     "application/json", 400, None),
    ("ndjson bad line", b'{"type": "agent.deleted", "agent_id": "a"}\n{oops\n',
     "application/x-ndjson", 400, None),
    ("not an object", [42], "application/json", 422, ""),
    ("unknown type", [{"type": "agent.exploded", "agent_id": "a"}], "application/json", 422,
     "type"),
    ("missing type", [{"agent_id": "a"}], "application/json", 422, "type"),
    ("missing agent id", [{"type": "agent.usage", "input_tokens": 5}], "application/json", 422,
     "agent_id"),
    ("string for a count", [{**USAGE, "input_tokens": "12"}], "application/json", 422,
     "input_tokens"),
    ("boolean for a count", [{**USAGE, "input_tokens": True}], "application/json", 422,
     "input_tokens"),
    ("negative tokens", [{**USAGE, "input_tokens": -1}], "application/json", 422, "input_tokens"),
    ("absurd tokens", [{**USAGE, "input_tokens": 10**15}], "application/json", 422,
     "input_tokens"),
    ("fractional tokens", [{**USAGE, "output_tokens": 1.5}], "application/json", 422,
     "output_tokens"),
    ("absurd cost", [{**USAGE, "cost_usd": 1e12}], "application/json", 422, "cost_usd"),
    ("negative cost", [{**USAGE, "costUsd": -0.5}], "application/json", 422, "cost_usd"),
    ("bad status", [{"type": "agent.status_changed", "agent_id": "a", "status": "dancing"}],
     "application/json", 422, "status"),
    ("timestamp words", [{**VALID, "timestamp": "yesterday"}], "application/json", 422,
     "timestamp"),
    ("timestamp impossible date", [{**VALID, "timestamp": "2026-13-45T00:00:00Z"}],
     "application/json", 422, "timestamp"),
    ("timestamp without offset", [{**VALID, "timestamp": "2026-01-01T00:00:00"}],
     "application/json", 422, "timestamp"),
    ("timestamp in milliseconds", [{**VALID, "timestamp": 1_790_000_000_000}],
     "application/json", 422, "timestamp"),
    ("timestamp far future", [{**VALID, "timestamp": 4_000_000_000}], "application/json", 422,
     "timestamp"),
    ("id too long", [{**VALID, "id": "x" * 129}], "application/json", 422, "id"),
    ("id not a string", [{**VALID, "id": 7}], "application/json", 422, "id"),
    ("quote in a label value", [{**VALID, "role": 'BUILDER"} 1\nfake_metric{a="'}],
     "application/json", 422, "role"),
    ("newline in a label value", [{**VALID, "model": "claude\nhaiku"}], "application/json", 422,
     "model"),
    ("10k characters in a label value", [{**VALID, "role": "R" * 10_000}], "application/json",
     422, "role"),
    ("backslash in a tool name",
     [{"type": "agent.tool_call", "agent_id": "a", "tool": "Bash\\", "outcome": "success"}],
     "application/json", 422, "tool"),
    ("one bad event in a good batch", [VALID, USAGE, {**USAGE, "input_tokens": -5}],
     "application/json", 422, "input_tokens"),
    # Bodies of 16 KiB and more are parsed by a worker process: the same answers must come back.
    ("bad event in a large batch", [VALID] * 400 + [{**USAGE, "input_tokens": -5}],
     "application/json", 422, "input_tokens"),
    ("malformed large body", b"[" + b'{"type": "agent.deleted", "agent_id": "a"},' * 500 + b"x]",
     "application/json", 400, None),
    ("large ndjson with a bad line", b'{"type": "agent.deleted", "agent_id": "a"}\n' * 500
     + b"{oops\n", "application/x-ndjson", 400, None),
    # JSON as another media type: refused before it is read.
    ("JSON sent as text/plain", [VALID], "text/plain", 415, "Content-Type"),
    ("JSON sent as a form", [VALID], "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("JSON sent as protobuf", [VALID], "application/x-protobuf", 415, "Content-Type"),
]


def stored_events(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.fixture
def exporter(exporter_factory, tmp_path: Path) -> tuple[ExporterProcess, Path]:
    database = tmp_path / "ledger.db"
    return exporter_factory(database_url=f"sqlite:///{database}"), database


def assert_error_shape(body: dict[str, Any]) -> None:
    assert set(body) == {"code", "message", "details", "request_id"}
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    assert isinstance(body["request_id"], str) and body["request_id"]


def _parse_workers(pid: int) -> list[int]:
    """Children of `pid` that run the parse worker."""
    children = [child for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return [int(child) for child in children
            if b"exporter.api.parse_worker" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_every_bad_input_is_refused_with_the_error_shape_and_stores_nothing(exporter):
    process, database = exporter
    # The large cases are parsed by the default parse workers, children of the server.
    default_workers = Settings.model_fields["parse_workers"].default
    assert len(_parse_workers(process.process.pid)) == default_workers
    for name, body, content_type, status, field in CASES:
        response = process.post_events(body, content_type=content_type)
        assert response.status_code == status, (name, response.text)
        payload = response.json()
        assert_error_shape(payload)
        assert response.headers["x-request-id"] == payload["request_id"]
        if field is not None:
            assert field in {detail.get("field") for detail in payload["details"]}, name
    assert stored_events(database) == 0
    assert process.sample("orchestrator_exporter_events_accepted_total",
                          type="agent.created") is None
    rejected = process.metrics()
    assert sum(value for (name, _), value in rejected.items()
               if name == "orchestrator_exporter_events_rejected_total") >= len(CASES)
    # Still serving: a good batch goes through afterwards.
    response = process.post_events([VALID, USAGE])
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert stored_events(database) == 2


def test_a_refused_batch_names_every_problem_with_its_index(exporter):
    process, _ = exporter
    batch = [VALID, {**USAGE, "input_tokens": -1}, {"type": "nope"}, {**USAGE, "agent_id": ""}]
    response = process.post_events(batch)
    assert response.status_code == 422
    problems = {(item["index"], item["field"]) for item in response.json()["details"]}
    assert problems == {(1, "input_tokens"), (2, "type"), (3, "agent_id")}


def test_oversize_requests_are_refused_with_413(exporter):
    process, database = exporter
    too_many = [{**VALID, "agent_id": f"a-{index}"} for index in range(10_001)]
    response = process.post_events(too_many)
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_events"
    huge = b'{"type": "log.entry", "level": "info", "message": "' + b"x" * (11 * 1024 * 1024) \
        + b'"}'
    response = process.post_events(huge)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert stored_events(database) == 0
    assert process.post_events(VALID).status_code == 200


def test_writing_needs_the_bearer_token(exporter):
    process, database = exporter
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {process.token}"}):
        response = process.post_events(VALID, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert stored_events(database) == 0


def test_unknown_paths_and_methods_use_the_error_shape(exporter):
    process, _ = exporter
    import httpx

    missing = httpx.get(f"{process.url}/api/v1/nothing", timeout=10)
    assert missing.status_code == 404
    assert_error_shape(missing.json())
    wrong_method = httpx.get(f"{process.url}/api/v1/events", timeout=10)
    assert wrong_method.status_code == 405
    assert_error_shape(wrong_method.json())


def test_a_killed_parse_worker_costs_no_request(exporter):
    process, database = exporter
    first, *others = _parse_workers(process.process.pid)
    # Large bodies, as go to the workers: one killed, then all; every batch is stored.
    for kill, round_ in (([first], "one"), (others, "all")):
        for worker in kill:
            os.kill(worker, signal.SIGKILL)
        for number in range(3):
            batch = [{"type": "log.entry", "id": f"{round_}-{number}-{index}", "level": "info",
                      "message": "x" * 40} for index in range(400)]
            response = process.post_events(batch)
            assert response.status_code == 200, response.text
            assert response.json() == {"accepted": 400, "duplicates": 0}
    assert _parse_workers(process.process.pid) == []
    assert stored_events(database) == 2_400
    invalid = process.post_events([VALID] * 400 + [{**USAGE, "input_tokens": -5}])
    assert invalid.status_code == 422


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/commands"), ("POST", "/api/v1/budgets"),
    ("PUT", "/api/v1/budgets/b-1"), ("POST", "/api/v1/alertmanager/webhook"),
])
def test_json_endpoints_refuse_other_media_types(exporter, method, path):
    process, _ = exporter
    body = b'{"kind": "fleet.pause", "target": {}, "limit_usd": 1, "period": "day"}'
    with http_client() as client:
        for media, expected in (("text/plain", 415), ("application/x-www-form-urlencoded", 415),
                                ("application/json; charset=utf-8", None), (None, None)):
            headers = {"Authorization": f"Bearer {process.token}"}
            if media is not None:
                headers["Content-Type"] = media
            response = client.request(method, f"{process.url}{path}", headers=headers,
                                      content=body)
            if expected is None:
                assert response.status_code != 415, (path, media, response.text)
            else:
                assert response.status_code == 415, (path, media, response.text)
                assert_error_shape(response.json())
                assert response.json()["code"] == "unsupported_media_type"
