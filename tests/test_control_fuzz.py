"""The control endpoints under fuzzing: any JSON body, any query, gets an answer in the error
shape or a command, never a 5xx; nothing invalid is stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import http_client

from exporter.control.commands import KINDS

AUTH = {"Authorization": "Bearer fuzz-admin"}
SCALARS = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=10)
COMMANDS = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(KINDS) | st.text(max_size=20),
    "target": st.dictionaries(st.sampled_from(["task_id", "run_id", "step_id", "agent_id",
                                               "role", "workflow", "source", "x"]),
                              JSON, max_size=3) | JSON,
    "args": JSON, "ttl_seconds": JSON, "idempotency_key": JSON, "extra": JSON})


@pytest.fixture
def client(exporter_factory: Any) -> Iterator[httpx.Client]:
    exporter = exporter_factory(token="fuzz-admin")
    with http_client(exporter.url) as http:
        yield http


def _answered(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert {"code", "message", "details", "request_id"} <= set(body), body


@settings(max_examples=300, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=COMMANDS | JSON)
def test_any_command_body_is_answered_in_shape(client, body):
    response = client.post("/api/v1/commands", json=body, headers=AUTH)
    _answered(response)
    if response.status_code in (200, 201):
        assert response.json()["kind"] in KINDS


@settings(max_examples=200, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=JSON, command_id=st.text(min_size=1, max_size=40).filter(
    lambda text: text not in (".", "..")),
    query=st.dictionaries(st.sampled_from(["status", "kind", "cursor", "limit", "wait",
                                           "token", "since", "format", "source", "role",
                                           "task_type"]),
                          st.text(max_size=12), max_size=3))
def test_results_lists_and_the_audit_are_answered_in_shape(client, body, command_id, query):
    _answered(client.post(f"/api/v1/commands/{quote(command_id, safe='')}/result", json=body,
                          headers=AUTH))
    _answered(client.get("/api/v1/commands", params=query, headers=AUTH))
    _answered(client.get("/api/v1/audit", params=query, headers=AUTH))
    _answered(client.get("/api/v1/admission", params=query, headers=AUTH))
    _answered(client.get("/api/v1/budgets", headers=AUTH))
    _answered(client.post("/api/v1/alertmanager/webhook", json=body, headers=AUTH))
    _answered(client.put(f"/api/v1/budgets/{quote(command_id, safe='')}", json=body,
                         headers=AUTH))
    _answered(client.post("/api/v1/budgets", json=body, headers=AUTH))
    _answered(client.post("/api/v1/alertmanager/webhook", json={"alerts": [body]},
                          headers=AUTH))
    _answered(client.get("/api/v1/commands/next", params={
        key: value for key, value in query.items() if key != "wait"}, headers=AUTH))
