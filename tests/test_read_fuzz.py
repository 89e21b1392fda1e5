"""The read endpoints under fuzzing: any query and any id gets a page, an entity or an answer
in the error shape, never a 5xx; a page's items always have the documented fields."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import mixed_stream
from support import http_client

from exporter.api import read_models

AUTH = {"Authorization": "Bearer fuzz-reader"}
PARAMS = ("source", "status", "role", "model", "task_id", "task_type", "workflow", "live",
          "sort", "cursor", "limit", "format", "analyst", "complexity", "from", "to", "q",
          "group_by", "top", "after", "before", "types", "x")
VALUES = st.text(max_size=40) | st.integers(-2**70, 2**70).map(str) | st.sampled_from([
    "-cost", "cost", "context_fill", "-duration", "csv", "ndjson", "json", "true", "false",
    "included", "2026-12-01", "2026-12-01T10:00:00Z", "1e308", "nan", "-1", "0", "1000",
    "role", "day", "week", "month", "agent.usage,log.entry", "WzEsImEiLCJiIl0"])
PATHS = ("/api/v1/agents", "/api/v1/tasks", "/api/v1/runs", "/api/v1/costs", "/api/v1/status",
         "/api/v1/budgets", "/api/v1/agents/{id}", "/api/v1/agents/{id}/events",
         "/api/v1/agents/{id}/logs", "/api/v1/agents/{id}/files", "/api/v1/tasks/{id}",
         "/api/v1/runs/{id}",
         "/api/v1/events/export")
PAGES = {"/api/v1/agents": read_models.AgentPage, "/api/v1/tasks": read_models.TaskPage,
         "/api/v1/runs": read_models.RunPage, "/api/v1/costs": read_models.CostAnswer,
         "/api/v1/status": read_models.Status}


@pytest.fixture
def client(exporter_factory: Any) -> Iterator[httpx.Client]:
    exporter = exporter_factory(token="fuzz-reader", env={
        "EXPORTER_API_RATE_PER_SECOND": "100000", "EXPORTER_API_BURST": "1000000"})
    for batch in mixed_stream(total=600, batch_size=300).batches:
        assert exporter.post_events(batch).status_code == 200
    with http_client(exporter.url) as http:
        yield http


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS),
       entity=st.sampled_from(["agent-1", "task-2", "run-3", "nobody"]) | st.text(
           min_size=1, max_size=200).filter(lambda text: text not in (".", "..")),
       query=st.dictionaries(st.sampled_from(PARAMS), VALUES, max_size=5))
def test_any_read_is_answered_in_shape(client, path, entity, query):
    url = path.replace("{id}", quote(entity, safe=""))
    response = client.get(url, params=query, headers=AUTH)
    assert response.status_code < 500, (url, query, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert {"code", "message", "details", "request_id"} <= set(body), body
        return
    model = PAGES.get(path)
    if model is not None and response.headers["content-type"].startswith("application/json"):
        model.model_validate(response.json())
