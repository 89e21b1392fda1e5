"""The read API against a real exporter: answers equal totals computed from the events sent
(tests/streams.py computes them by hand), on SQLite and PostgreSQL; every row exactly once
through filters, sorts and pages; read-your-writes under concurrent ingest; export and ingest
elsewhere gives equal totals."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from streams import Stream, mixed_stream
from support import ExporterFactory, ExporterProcess, http_client, write_tokens_file

NANO = 1_000_000_000
# These tests read thousands of rows one request at a time: lift the per-token rate limit.
UNLIMITED = {"EXPORTER_API_RATE_PER_SECOND": "100000", "EXPORTER_API_BURST": "1000000"}


def client_of(exporter: ExporterProcess) -> httpx.Client:
    return httpx.Client(base_url=exporter.url, timeout=60,
                        headers={"Authorization": f"Bearer {exporter.token}"})


def send(exporter: ExporterProcess, stream: Stream) -> None:
    for batch in stream.batches:
        response = exporter.post_events(batch)
        assert response.status_code == 200, response.text


def pages(client: httpx.Client, path: str, **params: Any) -> Iterator[dict[str, Any]]:
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        yield from body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return


@pytest.fixture(params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, exporter_factory: ExporterFactory
           ) -> tuple[ExporterProcess, Stream]:
    url = request.getfixturevalue("fresh_postgres_url") if request.param == "postgresql" \
        else None
    exporter = exporter_factory(database_url=url, env=UNLIMITED)
    stream = mixed_stream(total=3_000, batch_size=250)
    send(exporter, stream)
    return exporter, stream


def test_every_answer_equals_the_stream_s_totals(loaded: tuple[ExporterProcess, Stream]):
    exporter, stream = loaded
    expected = stream.expected
    with client_of(exporter) as client:
        by_role = client.get("/api/v1/costs", params={"group_by": "role"}).json()["items"]
        assert {item["role"]: round(item["cost_usd"] * NANO) for item in by_role} == {
            role: nano for role, nano in expected.cost_nano_by_role.items() if nano}
        tokens: Counter[str] = Counter()
        for item in by_role:
            tokens.update(item["tokens"])
        assert tokens == expected.tokens_by_type
        by_day = client.get("/api/v1/costs", params={"group_by": "day"}).json()["items"]
        assert round(sum(item["cost_usd"] for item in by_day) * NANO) == sum(
            expected.cost_nano_by_role.values())

        agents = list(pages(client, "/api/v1/agents", limit=37))
        assert len(agents) == expected.agents_created
        assert round(sum(agent["cost_usd"] for agent in agents) * NANO) == sum(
            expected.cost_nano_by_role.values())
        tasks = list(pages(client, "/api/v1/tasks", limit=9))
        assert Counter(task["status"] for task in tasks if task["status"] in (
            "completed", "failed", "cancelled")) == expected.tasks_by_status
        runs = list(pages(client, "/api/v1/runs", limit=11))
        assert Counter(run["status"] for run in runs) == expected.runs_by_status
        steps: Counter[str] = Counter()
        for run in runs:
            detail = client.get(f"/api/v1/runs/{run['run_id']}").json()
            starts = [step["started_at"] for step in detail["steps"]]
            assert starts == sorted(starts)  # a timeline
            steps.update(step["status"] for step in detail["steps"])
        assert steps == expected.steps_by_status

        tool_calls: Counter[str] = Counter()
        logs: Counter[str] = Counter()
        for agent in agents:
            detail = client.get(f"/api/v1/agents/{agent['agent_id']}").json()
            for entry in detail["tool_calls"]:
                tool_calls[entry["outcome"]] += entry["count"]
            logs.update(line["level"] for line in pages(
                client, f"/api/v1/agents/{agent['agent_id']}/logs", limit=50))
        assert tool_calls == expected.tool_calls_by_outcome
        assert logs == expected.logs_by_level

        status = client.get("/api/v1/status").json()
        assert status["events_accepted"] == expected.unique_events
        assert sum(status["agents"]["by_status"].values()) == expected.agents_created
        exported = client.get("/api/v1/events/export").content.splitlines()
        assert len(exported) == expected.unique_events


@pytest.mark.parametrize(("path", "sorts", "key"), [
    ("/api/v1/agents", ("last_activity", "created", "cost", "tokens", "context_fill"),
     "agent_id"),
    ("/api/v1/tasks", ("submitted", "ended", "cost", "duration"), "task_id"),
    ("/api/v1/runs", ("started", "ended", "duration"), "run_id"),
])
def test_every_sort_and_page_size_covers_every_row_exactly_once(
        exporter_factory: ExporterFactory, path: str, sorts: tuple[str, ...], key: str):
    exporter = exporter_factory(env=UNLIMITED)
    send(exporter, mixed_stream(total=1_500, batch_size=250))
    with client_of(exporter) as client:
        everything = [row[key] for row in pages(client, path, limit=1_000)]
        assert len(everything) == len(set(everything)) > 10
        for sort in sorts:
            for direction in ("", "-"):
                for limit in (1, 7, 64):
                    seen = [row[key] for row in pages(client, path, sort=direction + sort,
                                                      limit=limit)]
                    assert sorted(seen) == sorted(everything), (sort, direction, limit)
        csv_rows = client.get(path, params={"format": "csv"}).text.splitlines()
        assert len(csv_rows) == len(everything) + 1  # and a header
        ndjson = client.get(path, headers={"Accept": "application/x-ndjson"}).content
        assert sorted(orjson.loads(line)[key] for line in ndjson.splitlines()) == sorted(
            everything)
        assert len(client.get(path, params={"format": "ndjson", "limit": 5}
                              ).content.splitlines()) == 5


def test_filters_partition_the_rows(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env=UNLIMITED)
    stream = mixed_stream(total=1_500, batch_size=250)
    send(exporter, stream)
    with client_of(exporter) as client:
        agents = list(pages(client, "/api/v1/agents", limit=500))
        for field in ("role", "model", "task_id", "status"):
            total = 0
            for value in {agent[field] for agent in agents if agent[field] is not None}:
                chosen = list(pages(client, "/api/v1/agents", **{field: value}))
                assert chosen and all(agent[field] == value for agent in chosen)
                total += len(chosen)
            assert total == sum(1 for agent in agents if agent[field] is not None), field
        live = list(pages(client, "/api/v1/agents", live="true"))
        ended = list(pages(client, "/api/v1/agents", live="false"))
        assert len(live) + len(ended) == len(agents)
        tasks = list(pages(client, "/api/v1/tasks", limit=500))
        included = list(pages(client, "/api/v1/tasks", analyst="included"))
        excluded = list(pages(client, "/api/v1/tasks", analyst="excluded"))
        assert len(included) + len(excluded) == len(tasks)
        assert {task["analyst"] for task in included} == {"included"}
        by_cost = list(pages(client, "/api/v1/agents", sort="-cost", limit=13))
        costs = [agent["cost_usd"] for agent in by_cost]
        assert costs == sorted(costs, reverse=True)
        top = client.get("/api/v1/costs", params={"group_by": "model", "top": 1}).json()
        assert len(top["items"]) == 1


def test_task_text_search_and_detail(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env=UNLIMITED)
    events = [
        {"id": "t1", "type": "task.submitted", "task_id": "t-1", "task_type": "bugfix",
         "description": "Fix the 100% CPU loop in the_login handler"},
        {"id": "t2", "type": "task.submitted", "task_id": "t-2", "prompt": "Write docs"},
        {"id": "a1", "type": "agent.created", "agent_id": "a-1", "role": "builder",
         "model": "claude-opus-4-6", "task_id": "t-1"},
        {"id": "u1", "type": "agent.usage", "agent_id": "a-1", "input_tokens": 1000,
         "output_tokens": 100},
        {"id": "f1", "type": "task.failed", "task_id": "t-1", "error": "timed out"},
    ]
    assert exporter.post_events(events).status_code == 200
    with client_of(exporter) as client:
        def found(text: str) -> list[str]:
            return [task["task_id"] for task in pages(client, "/api/v1/tasks", q=text)]
        assert found("login") == ["t-1"]
        assert found("100%") == ["t-1"]  # % and _ are literal
        assert found("the_login") == ["t-1"]
        assert found("thexlogin") == []
        assert found("DOCS") == ["t-2"]
        detail = client.get("/api/v1/tasks/t-1").json()
        assert detail["error"] == "timed out"
        assert [agent["agent_id"] for agent in detail["agents"]] == ["a-1"]
        # claude-opus-4-6 at $5/$25 per million: 0.005 + 0.0025
        assert detail["agents_cost_usd"] == pytest.approx(0.0075, abs=1e-12)
        agent = client.get("/api/v1/agents/a-1").json()
        assert agent["role"] == "BUILDER" and agent["context_limit_tokens"] == 1_000_000
        assert agent["task"]["task_id"] == "t-1"


def test_read_your_writes_under_concurrent_ingest(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env=UNLIMITED)
    background = mixed_stream(total=20_000, batch_size=500)
    stop = threading.Event()

    def ingest() -> None:
        for batch in background.batches:
            if stop.is_set():
                return
            exporter.post_events(batch)

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        with client_of(exporter) as client:
            for index in range(40):
                agent_id, task_id = f"ryw-agent-{index}", f"ryw-task-{index}"
                assert exporter.post_events([
                    {"id": f"ryw-t-{index}", "type": "task.submitted", "task_id": task_id},
                    {"id": f"ryw-a-{index}", "type": "agent.created", "agent_id": agent_id,
                     "role": "TESTER", "task_id": task_id, "model": "claude-haiku-4-5"},
                    {"id": f"ryw-u-{index}", "type": "agent.usage", "agent_id": agent_id,
                     "input_tokens": 1_000_000}]).status_code == 200
                agent = client.get(f"/api/v1/agents/{agent_id}")
                assert agent.status_code == 200, (index, agent.text)
                assert agent.json()["cost_usd"] == 1.0  # claude-haiku-4-5: $1 per million
                assert [row["agent_id"] for row in pages(
                    client, "/api/v1/agents", task_id=task_id)] == [agent_id]
                costs = client.get("/api/v1/costs", params={"group_by": "role",
                                                            "role": "TESTER"}).json()
                tester = costs["items"][0]["cost_usd"] if costs["items"] else 0
                assert tester >= index + 1
    finally:
        stop.set()
        thread.join()


def test_export_ingested_elsewhere_gives_equal_totals(exporter_factory: ExporterFactory):
    source = exporter_factory(env=UNLIMITED)
    send(source, mixed_stream(total=3_000, batch_size=250))
    target = exporter_factory()
    with client_of(source) as client, client.stream("GET", "/api/v1/events/export") as answer:
        lines = [line for line in answer.iter_lines() if line]
    for start in range(0, len(lines), 1_000):
        body = "\n".join(lines[start:start + 1_000])
        response = target.post_events(body, content_type="application/x-ndjson")
        assert response.status_code == 200, response.text
    assert fleet_totals(target) == fleet_totals(source)
    assert fleet_totals(source)  # not two empty sets


def fleet_totals(exporter: ExporterProcess) -> dict[Any, float]:
    """The fleet's counters (not the exporter's own, nor per-live-agent timestamps)."""
    return {key: value for key, value in exporter.metrics().items()
            if key[0].startswith("orchestrator_") and key[0].endswith(("_total", "_count",
                                                                        "_sum", "_bucket"))
            and not key[0].startswith("orchestrator_exporter_")}


@pytest.mark.parametrize(("path", "field"), [
    ("/api/v1/agents?sort=name", "sort"), ("/api/v1/agents?limit=0", "limit"),
    ("/api/v1/agents?limit=1001", "limit"), ("/api/v1/agents?cursor=bm90IGEgY3Vyc29y", "cursor"),
    ("/api/v1/agents?format=xml", "format"), ("/api/v1/tasks?from=yesterday", "from"),
    ("/api/v1/tasks?from=2026-12-02&to=2026-12-01", "to"),
    ("/api/v1/costs?group_by=color", "group_by"), ("/api/v1/costs?top=0", "top"),
    ("/api/v1/events/export?types=agent.bogus", "types"),
    ("/api/v1/stream?types=nope", "types"),
])
def test_bad_queries_are_422_with_the_field(exporter_factory: ExporterFactory, path: str,
                                            field: str):
    exporter = exporter_factory(env=UNLIMITED)
    with client_of(exporter) as client:
        response = client.get(path)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] in ("invalid_query", "invalid_request")
    assert field in response.text


def test_reads_need_a_token_that_may_read(exporter_factory: ExporterFactory, tmp_path):
    tokens = write_tokens_file(tmp_path / "tokens.yml", [
        ("grafana", "viewer", "v" * 32), ("orchestrator", "ingest", "i" * 32)])
    exporter = exporter_factory(env={"EXPORTER_TOKENS_FILE": str(tokens), **UNLIMITED})
    with http_client() as client:
        url = f"{exporter.url}/api/v1/agents"
        assert client.get(url).status_code == 401
        assert client.get(url, headers={"Authorization": "Bearer " + "v" * 32}
                          ).status_code == 200
        assert client.get(url, headers={"Authorization": "Bearer " + "i" * 32}
                          ).status_code == 403
        assert client.get(f"{exporter.url}/api/v1/agents/nobody", headers={
            "Authorization": "Bearer " + "v" * 32}).status_code == 404
        assert client.get(f"{exporter.url}/api/v1/budgets", headers={
            "Authorization": "Bearer " + "v" * 32}).status_code == 200


def test_the_same_id_in_two_sources_needs_source(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env=UNLIMITED)
    assert exporter.post_events([
        {"type": "agent.created", "agent_id": "twin", "role": "BUILDER", "source": "east"},
        {"type": "agent.created", "agent_id": "twin", "role": "TESTER", "source": "west"},
    ]).status_code == 200
    with client_of(exporter) as client:
        assert client.get("/api/v1/agents/twin").status_code == 422
        west = client.get("/api/v1/agents/twin", params={"source": "west"}).json()
        assert west["role"] == "TESTER"
        assert client.get("/api/v1/agents/twin", params={"source": "east"}
                          ).json()["role"] == "BUILDER"


def test_an_agent_s_files_deduplicated_from_tool_calls_and_reports(
        exporter_factory: ExporterFactory):
    exporter = exporter_factory(env=UNLIMITED)
    calls = [{"type": "agent.tool_call", "agent_id": "f-1", "tool": tool, "outcome": "success",
              "file_path": path} for tool, path in (
                  ("Read", "/w/a.py"), ("Read", "/w/a.py"), ("Edit", "/w/a.py"),
                  ("Write", "/w/new file (1).md"), ("Bash", "/w/ignored-not-a-file-tool"))]
    calls[-1].pop("file_path")
    assert exporter.post_events([
        {"type": "agent.created", "agent_id": "f-1", "role": "BUILDER"}, *calls,
        {"type": "agent.files", "agent_id": "f-1", "files_read": ["/w/b.py", "/w/a.py"],
         "files_written": ["/w/new file (1).md"]},
        # the Python orchestrator's monitor: its final metrics name the files
        {"timestamp": "2026-12-01T10:00:00", "type": "agent_deleted", "data": {
            "agent_id": "f-2", "metrics": {"agent_id": "f-2", "files_read": ["/w/c.py"],
                                            "files_written": ["/w/d.py"], "total_cost": 0}}},
    ]).status_code == 200
    with client_of(exporter) as client:
        files = client.get("/api/v1/agents/f-1/files").json()
        assert files["items"] == [
            {"path": "/w/a.py", "read": 3, "written": 1},
            {"path": "/w/new file (1).md", "read": 0, "written": 2},
            {"path": "/w/b.py", "read": 1, "written": 0}]
        assert files["distinct_files"] == 3
        assert client.get("/api/v1/agents/f-1/files", params={"limit": 1}).json()[
            "items"] == files["items"][:1]
        assert client.get("/api/v1/agents/f-2/files").json()["items"] == [
            {"path": "/w/c.py", "read": 1, "written": 0},
            {"path": "/w/d.py", "read": 0, "written": 1}]
        assert client.get("/api/v1/agents/nobody/files").status_code == 404
    refused = exporter.post_events([{"type": "agent.files", "agent_id": "f-1",
                                     "read": ["x" * 5000]}])
    assert refused.status_code == 422 and "read" in refused.text
