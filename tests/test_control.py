"""Commands to the orchestrators over HTTP, against a real exporter: their life, their targets,
delivery at least once (through kill -9), expiry, bad bodies, and the audit trail."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from support import ExporterProcess, http_client, write_tokens_file

from exporter.client import ExporterClient

ADMIN = "control-admin"
TOKENS = {"operator": "op-secret", "ingest": "orchestrator-secret", "viewer": "view-secret"}


@pytest.fixture
def exporter(exporter_factory, tmp_path) -> ExporterProcess:
    return exporter_factory(token=ADMIN, env={
        "EXPORTER_TOKENS_FILE": str(write_tokens_file(tmp_path / "tokens.yml", [
            (f"{role}-1", role, secret) for role, secret in TOKENS.items()])),
        "EXPORTER_COMMAND_REDELIVER_SECONDS": "1"})


def call(exporter: ExporterProcess, method: str, path: str, secret: str,
         json: Any = None, content: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {secret}", "User-Agent": "control-test/1"}
    with http_client() as client:
        response = client.request(method, f"{exporter.url}{path}", headers=headers, json=json,
                                  content=content, timeout=30)
    body = response.json() if response.content and response.headers.get(
        "content-type", "").startswith("application/json") else response.text
    return response.status_code, body


def open_task(exporter: ExporterProcess, task_id: str, *, ended: bool = False) -> None:
    events = [{"type": "task.submitted", "task_id": task_id, "task_type": "bug_fix"},
              {"type": "task.started", "task_id": task_id}]
    if ended:
        events.append({"type": "task.completed", "task_id": task_id})
    assert exporter.post_events(events).status_code == 200


def test_a_command_lives_queued_delivered_succeeded_and_a_resent_result_changes_nothing(
        exporter):
    open_task(exporter, "t-1")
    code, command = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json={
        "kind": "task.cancel", "target": {"task_id": "t-1"}, "args": {"reason": "stuck"},
        "ttl_seconds": 60, "idempotency_key": "cancel-t-1"})
    assert code == 201
    assert {key: command[key] for key in ("kind", "target", "args", "status", "issued_by")} == {
        "kind": "task.cancel", "target": {"task_id": "t-1"}, "args": {"reason": "stuck"},
        "status": "queued", "issued_by": "operator-1"}
    again = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json={
        "kind": "task.cancel", "target": {"task_id": "t-1"}, "idempotency_key": "cancel-t-1"})
    assert again[0] == 200 and again[1]["id"] == command["id"]

    code, delivered = call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])
    assert (code, delivered["id"], delivered["status"], delivered["deliveries"]) == (
        200, command["id"], "delivered", 1)
    assert call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[0] == 204
    path = f"/api/v1/commands/{command['id']}/result"
    code, done = call(exporter, "POST", path, TOKENS["ingest"],
                      json={"status": "succeeded", "detail": {"cancelled": True}})
    assert (code, done["status"], done["detail"]) == (200, "succeeded", {"cancelled": True})
    assert call(exporter, "POST", path, TOKENS["ingest"], json={"status": "succeeded"})[0] == 200
    code, body = call(exporter, "POST", path, TOKENS["ingest"], json={"status": "failed"})
    assert (code, body["code"]) == (409, "conflict")
    code, page = call(exporter, "GET", "/api/v1/commands?status=succeeded", TOKENS["viewer"])
    assert code == 200 and [item["id"] for item in page["items"]] == [command["id"]]
    assert page["next_cursor"] is None


def test_targets_the_ledger_knows_absent_or_ended_are_refused(exporter):
    open_task(exporter, "t-done", ended=True)
    open_task(exporter, "t-open")
    code, body = call(exporter, "POST", "/api/v1/tasks/t-missing/cancel", TOKENS["operator"])
    assert (code, body["code"]) == (404, "not_found")
    code, body = call(exporter, "POST", "/api/v1/tasks/t-done/cancel", TOKENS["operator"])
    assert (code, body["code"]) == (409, "conflict")
    code, body = call(exporter, "POST", "/api/v1/tasks/t-open/cancel", TOKENS["operator"],
                      json={"ttl_seconds": 30})
    assert (code, body["kind"], body["target"]) == (201, "task.cancel", {"task_id": "t-open"})
    code, body = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json={
        "kind": "fleet.pause", "target": {"role": "ANALYST"}})
    assert code == 201 and body["target"] == {"role": "ANALYST"}
    items = call(exporter, "GET", "/api/v1/commands", TOKENS["viewer"])[1]["items"]
    assert [item["kind"] for item in items] == ["task.cancel", "fleet.pause"]


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "task.explode"}, "kind"),
    ({"kind": "task.cancel", "target": {}}, "target.task_id"),
    ({"kind": "task.cancel", "target": {"task_id": "t\n1"}}, "target.task_id"),
    ({"kind": "fleet.pause", "target": {"colour": "red"}}, "target.colour"),
    ({"kind": "fleet.pause", "ttl_seconds": -1}, "ttl_seconds"),
    ({"kind": "fleet.pause", "args": [1]}, "args"),
    ({"kind": "fleet.pause", "idempotency_key": ""}, "idempotency_key"),
    ({"kind": "fleet.pause", "priority": 1}, "priority"),
])
def test_bad_command_bodies_get_422_naming_the_field_and_store_nothing(exporter, body, field):
    code, answer = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json=body)
    assert (code, answer["code"]) == (422, "invalid_command")
    assert field in [problem["field"] for problem in answer["details"]]
    assert call(exporter, "GET", "/api/v1/commands", TOKENS["viewer"])[1]["items"] == []


def test_malformed_and_oversized_bodies(exporter):
    assert call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                content=b"{not json")[0] == 400
    big = b'{"kind": "fleet.pause", "args": {"x": "' + b"a" * 70_000 + b'"}}'
    assert call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], content=big)[0] == 413


def test_a_long_poll_answers_when_a_command_comes_and_204_when_none_does(exporter):
    started = time.monotonic()
    assert call(exporter, "GET", "/api/v1/commands/next?wait=1.5", TOKENS["ingest"])[0] == 204
    assert time.monotonic() - started >= 1.4
    later = threading.Timer(0.5, lambda: call(exporter, "POST", "/api/v1/commands",
                                              TOKENS["operator"], json={"kind": "fleet.resume"}))
    later.start()
    started = time.monotonic()
    code, command = call(exporter, "GET", "/api/v1/commands/next?wait=20", TOKENS["ingest"])
    later.join()
    assert (code, command["kind"]) == (200, "fleet.resume")
    assert time.monotonic() - started < 5
    assert call(exporter, "GET", "/api/v1/commands/next?wait=61", TOKENS["ingest"])[0] == 422


def test_expired_commands_are_never_delivered(exporter):
    code, command = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                         json={"kind": "fleet.pause", "ttl_seconds": 0.5})
    assert code == 201
    time.sleep(1.0)
    assert call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[0] == 204
    assert call(exporter, "GET", f"/api/v1/commands/{command['id']}",
                TOKENS["viewer"])[1]["status"] == "expired"


def test_delivery_survives_kill9_and_an_unanswered_command_is_delivered_again(exporter):
    code, command = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                         json={"kind": "fleet.pause", "target": {"role": "BUILDER"}})
    assert code == 201
    first = call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[1]
    assert first["id"] == command["id"]
    exporter.kill9()  # the orchestrator never answered; the exporter dies too
    exporter.start()
    time.sleep(1.1)  # EXPORTER_COMMAND_REDELIVER_SECONDS=1
    code, again = call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])
    assert (code, again["id"], again["deliveries"]) == (200, command["id"], 2)
    assert call(exporter, "POST", f"/api/v1/commands/{command['id']}/result",
                TOKENS["ingest"], json={"status": "succeeded"})[0] == 200
    time.sleep(1.1)
    assert call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[0] == 204


def test_the_audit_trail_names_who_did_what_and_exports(exporter):
    open_task(exporter, "t-a")
    command = call(exporter, "POST", "/api/v1/tasks/t-a/cancel", TOKENS["operator"])[1]
    call(exporter, "POST", "/api/v1/tasks/t-gone/cancel", TOKENS["operator"])
    call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])
    call(exporter, "POST", f"/api/v1/commands/{command['id']}/result", TOKENS["ingest"],
         json={"status": "failed", "detail": "no such asyncio task"})
    code, trail = call(exporter, "GET", "/api/v1/audit", ADMIN)
    assert code == 200
    rows = [(row["token"], row["action"], row["outcome"]) for row in trail["items"]]
    assert rows == [("operator-1", "command.task.cancel", "queued"),
                    ("operator-1", "command.task.cancel", "refused"),
                    ("ingest-1", "deliver.task.cancel", "delivered"),
                    ("ingest-1", "result.task.cancel", "failed")]
    assert all(row["user_agent"] == "control-test/1" and row["client"] == "127.0.0.1"
               for row in trail["items"])
    code, text = call(exporter, "GET", "/api/v1/audit?format=ndjson&token=ingest-1", ADMIN)
    assert code == 200 and len(str(text).strip().splitlines()) == 2
    assert call(exporter, "GET", "/api/v1/audit", TOKENS["operator"])[0] == 403
    samples = exporter.metrics()
    assert samples[("orchestrator_exporter_commands_total", frozenset(
        {("kind", "task.cancel"), ("outcome", "refused")}))] == 1
    assert samples[("orchestrator_exporter_commands_queued", frozenset(
        {("kind", "task.cancel")}))] == 0
    assert samples[("orchestrator_exporter_command_delivery_seconds_count", frozenset())] == 1


def test_a_token_past_its_rate_gets_429_with_retry_after_and_others_go_on(
        exporter_factory, tmp_path):
    exporter = exporter_factory(token=ADMIN, env={
        "EXPORTER_TOKENS_FILE": str(write_tokens_file(tmp_path / "tokens.yml", [
            (f"{role}-1", role, secret) for role, secret in TOKENS.items()])),
        "EXPORTER_API_RATE_PER_SECOND": "0.5", "EXPORTER_API_BURST": "2"})
    codes = [call(exporter, "GET", "/api/v1/commands", TOKENS["viewer"])[0] for _ in range(3)]
    assert codes == [200, 200, 429]
    with http_client() as client:
        response = client.get(f"{exporter.url}/api/v1/commands",
                              headers={"Authorization": f"Bearer {TOKENS['viewer']}"})
    assert response.status_code == 429 and response.json()["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 2
    assert call(exporter, "GET", "/api/v1/commands", TOKENS["operator"])[0] == 200
    # ingest has its own back-pressure: never rate-limited here
    for _ in range(5):
        assert exporter.post_events([{"type": "task.submitted", "task_id": "t"}]).status_code \
            == 200


def test_security_headers_on_every_answer_and_cors_only_when_configured(
        exporter, exporter_factory):
    with http_client() as client:
        api = client.get(f"{exporter.url}/api/v1/commands",
                         headers={"Origin": "https://grafana.example",
                                  "Authorization": f"Bearer {TOKENS['viewer']}"})
        metrics = client.get(f"{exporter.url}/metrics")
    for response in (api, metrics):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
    assert api.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "access-control-allow-origin" not in api.headers
    allowed = exporter_factory(env={"EXPORTER_CORS_ORIGINS": '["https://grafana.example"]'})
    with http_client() as client:
        preflight = client.options(f"{allowed.url}/api/v1/commands", headers={
            "Origin": "https://grafana.example", "Access-Control-Request-Method": "GET"})
    assert preflight.headers["access-control-allow-origin"] == "https://grafana.example"


def test_an_orchestrator_that_dies_before_answering_gets_the_command_again_after_restarts(
        exporter):
    """Delivered, never answered: the orchestrator died. The exporter dies too (kill -9). The
    next orchestrator gets the same command, runs it once, and never sees an expired one."""
    expired = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                   json={"kind": "fleet.resume", "ttl_seconds": 1})[1]
    code, command = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                         json={"kind": "fleet.pause", "target": {"task_type": "research"}})
    assert code == 201
    first = call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[1]
    assert first["id"] == expired["id"]  # the first orchestrator takes both, then dies
    assert call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[1]["id"] == \
        command["id"]
    exporter.kill9()
    exporter.start()
    time.sleep(1.2)  # past the TTL of the first, and the redelivery time of both

    ran: list[str] = []
    stop = threading.Event()
    client = ExporterClient(exporter.url, TOKENS["ingest"])
    handlers = {kind: (lambda command: ran.append(command["id"]))
                for kind in ("fleet.pause", "fleet.resume")}
    worker = threading.Thread(target=client.serve_commands, args=(handlers,),
                              kwargs={"stop": stop, "wait": 0.5}, daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while call(exporter, "GET", f"/api/v1/commands/{command['id']}",
                   TOKENS["viewer"])[1]["status"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.5)  # a redelivery would come now if the result had not landed
    finally:
        stop.set()
        worker.join(10)
        client.close()
    assert ran == [command["id"]]
    done = call(exporter, "GET", f"/api/v1/commands/{command['id']}", TOKENS["viewer"])[1]
    assert done["deliveries"] == 2
    assert call(exporter, "GET", f"/api/v1/commands/{expired['id']}",
                TOKENS["viewer"])[1]["status"] == "expired"


def test_a_retry_with_its_key_is_answered_as_before_even_once_the_target_ended(exporter):
    open_task(exporter, "t-r")
    body = {"kind": "task.cancel", "target": {"task_id": "t-r"}, "idempotency_key": "k-1"}
    code, first = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json=body)
    assert code == 201
    assert exporter.post_events([{"type": "task.cancelled", "task_id": "t-r"}]).status_code \
        == 200
    code, again = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json=body)
    assert (code, again["id"]) == (200, first["id"])
    code, other = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                       json={"kind": "fleet.pause", "idempotency_key": "k-1"})
    assert (code, other["code"]) == (409, "conflict")


def test_each_orchestrator_takes_the_commands_of_its_own_source(exporter):
    for source in ("eu", "us"):
        assert call(exporter, "POST", "/api/v1/commands", TOKENS["operator"], json={
            "kind": "fleet.pause", "target": {"source": source}})[0] == 201
    code, us = call(exporter, "GET", "/api/v1/commands/next?source=us", TOKENS["ingest"])
    assert (code, us["target"]) == (200, {"source": "us"})
    assert call(exporter, "GET", "/api/v1/commands/next", TOKENS["ingest"])[0] == 204
    code, eu = call(exporter, "GET", "/api/v1/commands/next?source=eu", TOKENS["ingest"])
    assert (code, eu["target"]) == (200, {"source": "eu"})


def test_what_cannot_be_stored_or_is_not_a_cancel_gets_422(exporter):
    nested: Any = "x"
    for _ in range(300):
        nested = [nested]
    code, body = call(exporter, "POST", "/api/v1/commands", TOKENS["operator"],
                      json={"kind": "fleet.pause", "args": {"deep": nested}})
    assert (code, body["details"][0]["field"]) == (422, "args")
    open_task(exporter, "t-c")
    code, body = call(exporter, "POST", "/api/v1/tasks/t-c/cancel", TOKENS["operator"],
                      json={"ttl_seconds": 30, "priority": "high"})
    assert (code, body["details"][0]["field"]) == (422, "priority")
    assert call(exporter, "GET", "/api/v1/commands", TOKENS["viewer"])[1]["items"] == []
