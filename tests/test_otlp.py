"""The OTLP/HTTP receiver against a real exporter, fed by the real OpenTelemetry Python SDK.

The SDK's meters and loggers emit what Claude Code emits (its metric names, attributes and
events, every event attribute a string), through the SDK's own OTLP/HTTP exporters. The SDK's
HTTP exporter only speaks protobuf: for OTLP/JSON, `Sent` re-encodes the very request the SDK
made with protobuf's JSON mapping (integers for enums, as OTLP/JSON wants) before sending it.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import requests
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from support.network import http_client

PROTOBUF = "application/x-protobuf"
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
USER = {"user.id": "5f0e" * 16, "organization.id": "org-1", "user.account_uuid": "acct-1",
        "terminal.type": "vscode"}


class Sent(requests.Session):
    """The SDK exporter's HTTP session: keeps what it sent, to send the same bytes again; with
    `as_json`, sends the JSON encoding of the request the SDK made instead of its protobuf."""

    def __init__(self, message: type[Message] | None = None) -> None:
        super().__init__()
        self.json_of = message
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []
        self.responses: list[requests.Response] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        headers = {name.title(): value for name, value in (kwargs.pop("headers", None)
                                                           or {}).items()}
        data: bytes = kwargs.pop("data")
        if self.json_of is not None:
            zipped = headers.get("Content-Encoding") == "gzip"
            message = self.json_of.FromString(gzip.decompress(data) if zipped else data)
            data = json_format.MessageToJson(message, use_integers_for_enums=True).encode()
            data = gzip.compress(data) if zipped else data
            headers["Content-Type"] = "application/json"
        self.requests.append((url, data, headers))
        response = super().request(method, url, *args, headers=headers, data=data, **kwargs)
        self.responses.append(response)
        return response


class ClaudeCodeProcess:
    """One Claude Code process as its telemetry shows it: a meter and an event logger sharing a
    resource, exporting to the exporter over OTLP/HTTP."""

    def __init__(self, url: str, token: str, *, resource: Mapping[str, str],
                 temporality: AggregationTemporality = AggregationTemporality.DELTA,
                 as_json: bool = False, gzip_body: bool = False) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        compression = Compression.Gzip if gzip_body else Compression.NoCompression
        self.metric_session = Sent(ExportMetricsServiceRequest if as_json else None)
        self.log_session = Sent(ExportLogsServiceRequest if as_json else None)
        self.reader = PeriodicExportingMetricReader(OTLPMetricExporter(
            endpoint=f"{url}/v1/metrics", headers=headers, session=self.metric_session,
            compression=compression, preferred_temporality={Counter: temporality}),
            export_interval_millis=3_600_000)
        attributes = {"service.name": "claude-code", "service.version": "2.1.162", **resource}
        self.meters = MeterProvider(resource=Resource.create(attributes),
                                    metric_readers=[self.reader])
        meter = self.meters.get_meter("com.anthropic.claude_code", "2.1.162")
        self.counters = {name: meter.create_counter(f"claude_code.{name}", unit=unit)
                         for name, unit in (("session.count", ""), ("cost.usage", "USD"),
                                            ("token.usage", "tokens"),
                                            ("lines_of_code.count", ""), ("commit.count", ""),
                                            ("pull_request.count", ""),
                                            ("active_time.total", "s"),
                                            ("code_edit_tool.decision", ""))}
        self.loggers = LoggerProvider(resource=Resource.create(attributes))
        self.loggers.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
            endpoint=f"{url}/v1/logs", headers=headers, session=self.log_session,
            compression=compression), schedule_delay_millis=3_600_000))
        self.events = self.loggers.get_logger("com.anthropic.claude_code.events", "2.1.162")
        self.sequence = 0

    def add(self, name: str, value: float, session: str, **attributes: str) -> None:
        """`counter.add` as Claude Code calls it: the standard attributes, then the metric's."""
        self.counters[name].add(value, {**USER, "session.id": session, **attributes})

    def usage(self, session: str, model: str, cost: float, **tokens: float) -> None:
        """What Claude Code records after an API request: cost, then tokens by type."""
        self.add("cost.usage", cost, session, model=model)
        for kind, count in tokens.items():
            self.add("token.usage", count, session, model=model, type=kind)

    def event(self, name: str, session: str, **attributes: str) -> None:
        """`logOTelEvent`: body `claude_code.<name>`, `event.name` the bare name, every value a
        string; no timestamp of its own (the SDK stamps the observed time)."""
        self.sequence += 1
        self.events.emit(body=f"claude_code.{name}", attributes={
            **USER, "session.id": session, "event.name": name,
            "event.timestamp": "2026-11-20T10:00:00.000Z", "event.sequence": self.sequence,
            "prompt.id": "prompt-1", **attributes})

    def export(self) -> None:
        """One metrics export request and one logs export request, both answered 200."""
        assert self.meters.force_flush(10_000)
        assert self.loggers.force_flush(10_000)
        for response in (*self.metric_session.responses, *self.log_session.responses):
            assert response.status_code == 200, response.content

    def close(self) -> None:
        self.meters.shutdown()
        self.loggers.shutdown()


@contextmanager
def claude_code(exporter: Any, **options: Any) -> Iterator[ClaudeCodeProcess]:
    process = ClaudeCodeProcess(exporter.url, exporter.token, **options)
    try:
        yield process
    finally:
        process.close()


def resend(exporter: Any, *processes: ClaudeCodeProcess) -> list[httpx.Response]:
    """Every export request the processes made, sent again byte for byte (an OTLP retry)."""
    with http_client() as client:
        return [client.post(url, content=body, headers=headers)
                for process in processes
                for url, body, headers in (*process.metric_session.requests,
                                           *process.log_session.requests)]


def fleet_samples(exporter: Any) -> dict[Any, float]:
    """The fleet's samples, without the exporter's own (durations and duplicates move)."""
    return {key: value for key, value in exporter.metrics().items()
            if key[0].startswith("orchestrator_") and not key[0].startswith(
                "orchestrator_exporter_") and "_timestamp_" not in key[0]}


def cost(exporter: Any, **labels: str) -> float:
    return _sum(exporter, "orchestrator_cost_usd_total", labels)


def _sum(exporter: Any, name: str, labels: Mapping[str, str]) -> float:
    return sum(value for (sample, pairs), value in exporter.metrics().items()
               if sample == name and set(labels.items()) <= pairs)


def accepted_events(exporter: Any) -> float:
    return _sum(exporter, "orchestrator_exporter_events_accepted_total", {})


def test_claude_code_delta_metrics_and_events_count_cost_once(exporter_factory):
    exporter = exporter_factory()
    builder = {"orchestrator.role": "builder", "orchestrator.task_id": "task-7",
               "orchestrator.source": "team-a"}
    with claude_code(exporter, resource=builder) as process:
        process.add("session.count", 1, "sess-a")
        process.usage("sess-a", HAIKU, 0.25, input=100.0, output=20.0)
        process.usage("sess-a", SONNET, 0.5, input=1000.0, output=200.0, cacheRead=5000.0,
                      cacheCreation=300.0)
        process.add("lines_of_code.count", 10, "sess-a", type="added")
        process.add("lines_of_code.count", 3, "sess-a", type="removed")
        process.add("commit.count", 1, "sess-a")
        process.add("active_time.total", 2.5, "sess-a", type="user")
        process.add("active_time.total", 7.5, "sess-a", type="cli")
        for decision, tool in (("accept", "Edit"), ("accept", "Edit"), ("reject", "Write")):
            process.add("code_edit_tool.decision", 1, "sess-a", decision=decision,
                        tool_name=tool, source="config", language="Python")
        for model, cost_usd, tokens in ((HAIKU, "0.25", ("100", "20", "0", "0")),
                                        (SONNET, "0.5", ("1000", "200", "5000", "300"))):
            process.event("api_request", "sess-a", model=model, cost_usd=cost_usd,
                          duration_ms="2300", input_tokens=tokens[0], output_tokens=tokens[1],
                          cache_read_tokens=tokens[2], cache_creation_tokens=tokens[3],
                          speed="normal")
        process.event("user_prompt", "sess-a", prompt_length="42", prompt="<REDACTED>")
        process.event("tool_decision", "sess-a", tool_name="Bash", decision="accept",
                      source="config")
        process.event("tool_result", "sess-a", tool_name="Bash", success="true",
                      duration_ms="1200", tool_result_size_bytes="512",
                      decision_source="config", decision_type="accept")
        process.event("tool_result", "sess-a", tool_name="Edit", success="false",
                      duration_ms="50", error="String to replace not found")
        process.event("api_error", "sess-a", model=SONNET, error="Overloaded",
                      status_code="529", duration_ms="900", attempt="1")
        process.event("hook_registered", "sess-a")
        process.export()
        # The next interval: more usage, a pull request; the events of the same request.
        process.usage("sess-a", SONNET, 0.125, input=500.0, output=100.0)
        process.add("pull_request.count", 1, "sess-a")
        process.event("api_request", "sess-a", model=SONNET, cost_usd="0.125",
                      input_tokens="500", output_tokens="100", cache_read_tokens="0",
                      cache_creation_tokens="0", duration_ms="1800", speed="normal")
        process.export()

        team = {"source": "team-a", "role": "BUILDER"}
        assert cost(exporter, **team) == pytest.approx(0.875, abs=1e-9)
        assert cost(exporter, model=SONNET, **team) == pytest.approx(0.625, abs=1e-9)
        assert cost(exporter, model=HAIKU, **team) == pytest.approx(0.25, abs=1e-9)
        tokens = {(kind, model): _sum(exporter, "orchestrator_tokens_total",
                                      {"type": kind, "model": model, **team})
                  for kind in ("input", "output", "cache_read", "cache_creation")
                  for model in (SONNET, HAIKU)}
        assert tokens == {("input", SONNET): 1500, ("output", SONNET): 300,
                          ("cache_read", SONNET): 5000, ("cache_creation", SONNET): 300,
                          ("input", HAIKU): 100, ("output", HAIKU): 20,
                          ("cache_read", HAIKU): 0, ("cache_creation", HAIKU): 0}
        sample = exporter.sample
        # The session is one agent, of its resource's role, task and source; its model is the
        # one it spent most on, though the small model answered first.
        assert sample("orchestrator_agents_created_total", model=SONNET, **team) == 1
        assert sample("orchestrator_agent_cost_usd", agent_id="sess-a", **team) == \
            pytest.approx(0.875, abs=1e-9)
        assert sample("orchestrator_tool_calls_total", tool="Bash", outcome="success",
                      **team) == 1
        assert sample("orchestrator_tool_calls_total", tool="Edit", outcome="error", **team) == 1
        assert sample("orchestrator_tool_call_duration_seconds_sum", tool="Bash", **team) == \
            pytest.approx(1.2)
        for level in ("error", "info", "debug"):
            assert sample("orchestrator_log_entries_total", source="team-a", level=level) == 1
        assert sample("orchestrator_claude_code_lines_of_code_total", type="added", **team) == 10
        assert sample("orchestrator_claude_code_lines_of_code_total", type="removed",
                      **team) == 3
        assert sample("orchestrator_claude_code_commits_total", **team) == 1
        assert sample("orchestrator_claude_code_pull_requests_total", **team) == 1
        assert sample("orchestrator_claude_code_active_time_seconds_total", type="user",
                      **team) == 2.5
        assert sample("orchestrator_claude_code_active_time_seconds_total", type="cli",
                      **team) == 7.5
        assert sample("orchestrator_claude_code_edit_decisions_total", tool="Edit",
                      decision="accept", **team) == 2
        assert sample("orchestrator_claude_code_edit_decisions_total", tool="Write",
                      decision="reject", **team) == 1
        assert sample("orchestrator_exporter_events_ignored_total", dialect="claude_code_otlp",
                      type="claude_code.hook_registered") == 1

        before, events = fleet_samples(exporter), accepted_events(exporter)
        answers = resend(exporter, process)
        assert len(answers) == 4
        assert all(answer.status_code == 200 for answer in answers)
        assert fleet_samples(exporter) == before
        assert accepted_events(exporter) == events


def test_cumulative_json_gzip_counts_increases_resets_and_resends_once(exporter_factory):
    exporter = exporter_factory()
    options = {"resource": {}, "temporality": AggregationTemporality.CUMULATIVE,
               "as_json": True, "gzip_body": True}
    with claude_code(exporter, **options) as process:
        process.usage("sess-c", SONNET, 0.5, input=1000.0, output=10.0)
        process.add("lines_of_code.count", 4, "sess-c", type="added")
        process.export()
        process.usage("sess-c", SONNET, 0.25, input=500.0)
        process.add("lines_of_code.count", 1, "sess-c", type="added")
        process.export()
        process.export()  # nothing new: the same totals at a later time
        assert all(headers["Content-Type"] == "application/json" and
                   headers["Content-Encoding"] == "gzip"
                   for _, _, headers in process.metric_session.requests)
        assert {response.headers["Content-Type"]
                for response in process.metric_session.responses} == {"application/json"}
        first = process
    # Claude Code restarted on the same session (`--resume`): its counters start again at 0,
    # with a new start time; what it counts now adds to what was counted.
    with claude_code(exporter, **options) as process:
        process.usage("sess-c", SONNET, 0.125, input=100.0)
        process.export()
        default = {"source": "default", "role": "CLAUDE_CODE", "model": SONNET}
        assert cost(exporter, **default) == pytest.approx(0.875, abs=1e-9)
        assert exporter.sample("orchestrator_tokens_total", task_type="none", workflow="none",
                               type="input", **default) == 1600
        assert exporter.sample("orchestrator_tokens_total", task_type="none", workflow="none",
                               type="output", **default) == 10
        assert exporter.sample("orchestrator_claude_code_lines_of_code_total", source="default",
                               role="CLAUDE_CODE", type="added") == 5

        before, events = fleet_samples(exporter), accepted_events(exporter)
        answers = resend(exporter, first, process)
        assert [answer.status_code for answer in answers] == [200] * len(answers)
        assert fleet_samples(exporter) == before
        assert accepted_events(exporter) == events


def test_usage_from_events_counts_api_requests_and_not_the_metrics(exporter_factory):
    exporter = exporter_factory(env={"EXPORTER_OTLP_USAGE_FROM": "events",
                                     "EXPORTER_CLAUDE_CODE_ROLE": "reviewer"})
    with claude_code(exporter, resource={}) as process:
        process.usage("sess-e", SONNET, 0.5, input=1000.0)
        process.event("api_request", "sess-e", model=SONNET, cost_usd="0.5",
                      input_tokens="1000", output_tokens="0", cache_read_tokens="0",
                      cache_creation_tokens="0", duration_ms="1000")
        process.export()
        assert cost(exporter, role="REVIEWER") == pytest.approx(0.5, abs=1e-9)
        assert _sum(exporter, "orchestrator_tokens_total", {"type": "input"}) == 1000
        partial = ExportMetricsServiceResponse.FromString(
            process.metric_session.responses[0].content).partial_success
        assert partial.rejected_data_points == 0
        assert "2 data points carried nothing" in partial.error_message


def test_one_role_setting_for_claude_code_over_otlp_and_hooks(exporter_factory):
    exporter = exporter_factory(env={"EXPORTER_CLAUDE_CODE_ROLE": "builder"})
    with claude_code(exporter, resource={}) as process:
        process.add("commit.count", 1, "sess-otlp")
        process.export()
    hook = {"session_id": "sess-hooks", "hook_event_name": "Stop"}
    with http_client() as client:
        answer = client.post(f"{exporter.url}/api/v1/hooks/claude-code", json=hook,
                             headers={"Authorization": f"Bearer {exporter.token}"})
    assert answer.status_code == 200, answer.text
    # The two sessions, one by OTLP and one by hooks, both take the one setting's role.
    assert _sum(exporter, "orchestrator_agents_created_total", {"role": "BUILDER"}) == 2
    assert _sum(exporter, "orchestrator_agents_created_total", {}) == 2


def test_the_removed_otlp_role_setting_stops_the_exporter_naming_its_replacement():
    result = subprocess.run([sys.executable, "-m", "exporter", "serve"], capture_output=True,
                            text=True, timeout=60, check=False,
                            env={**os.environ, "EXPORTER_OTLP_DEFAULT_ROLE": "BUILDER"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "orchestrator-exporter: invalid settings: Value error, EXPORTER_OTLP_DEFAULT_ROLE is no "
        "longer read: set EXPORTER_CLAUDE_CODE_ROLE instead, the one role of a Claude Code "
        "session whether it arrives by OTLP, hooks or transcripts"]


def _post(exporter: Any, path: str, body: bytes, content_type: str,
          **headers: str) -> httpx.Response:
    with http_client() as client:
        return client.post(f"{exporter.url}{path}", content=body, headers={
            "Authorization": f"Bearer {exporter.token}", "Content-Type": content_type,
            **headers})


def _sdk_request(exporter: Any) -> bytes:
    """The bytes of one real export request of the SDK, sent where nothing is stored."""
    process = ClaudeCodeProcess(f"{exporter.url}/nowhere", exporter.token, resource={})
    try:
        process.usage("sess-x", SONNET, 0.5, input=1000.0)
        process.meters.force_flush(10_000)
        return process.metric_session.requests[-1][1]
    finally:
        process.close()


def test_bad_bodies_get_otlp_status_answers_and_store_nothing(exporter_factory):
    exporter = exporter_factory(env={"EXPORTER_MAX_BODY_BYTES": str(64 * 1024)})
    good = _sdk_request(exporter)
    events = accepted_events(exporter)
    truncated = _post(exporter, "/v1/metrics", good[:-1], PROTOBUF)
    assert truncated.status_code == 400
    assert truncated.headers["content-type"] == PROTOBUF
    status = Status.FromString(truncated.content)
    assert status.code == 3 and "not a valid ExportMetricsServiceRequest" in status.message
    malformed = _post(exporter, "/v1/logs", b'{"resourceLogs": [', "application/json")
    assert malformed.status_code == 400
    assert malformed.json()["code"] == 3
    wrong_shape = _post(exporter, "/v1/metrics", good, "application/json")
    assert wrong_shape.status_code == 400
    assert _post(exporter, "/v1/metrics", good, "text/plain").status_code == 415
    assert _post(exporter, "/v1/metrics", good, PROTOBUF,
                 **{"Content-Encoding": "br"}).status_code == 415
    corrupt = _post(exporter, "/v1/metrics", b"\x1f\x8b" + good, PROTOBUF,
                    **{"Content-Encoding": "gzip"})
    assert corrupt.status_code == 400
    bomb = gzip.compress(b"\0" * (1024 * 1024))
    assert len(bomb) < 64 * 1024
    oversize = _post(exporter, "/v1/metrics", bomb, PROTOBUF, **{"Content-Encoding": "gzip"})
    assert oversize.status_code == 413
    assert Status.FromString(oversize.content).code == 8
    assert _post(exporter, "/v1/metrics", b"x" * (65 * 1024), PROTOBUF).status_code == 413
    unauthorized = _post(exporter, "/v1/metrics", good, PROTOBUF,
                         Authorization="Bearer wrong")
    assert unauthorized.status_code == 401
    assert accepted_events(exporter) == events
    assert exporter.sample("orchestrator_exporter_events_rejected_total",
                           reason="malformed") == 6
    assert exporter.sample("orchestrator_exporter_events_rejected_total",
                           reason="oversize") == 2
    assert _post(exporter, "/v1/metrics", good, PROTOBUF).status_code == 200


def _metrics_request(points: list[tuple[dict[str, str], float]]) -> bytes:
    """A delta cost request built from opentelemetry-proto messages (the SDK caps an
    instrument at 2,000 attribute sets; a collector batching many processes does not)."""
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "claude_code.cost.usage"
    metric.sum.aggregation_temporality = AggregationTemporality.DELTA.value
    metric.sum.is_monotonic = True
    now = time.time_ns()
    for attributes, value in points:
        point = metric.sum.data_points.add(start_time_unix_nano=now - 60 * 10**9,
                                           time_unix_nano=now, as_double=value)
        point.attributes.extend(KeyValue(key=key, value=AnyValue(string_value=text))
                                for key, text in attributes.items())
    return request.SerializeToString()


def test_huge_attribute_values_are_cut_to_bounded_names(exporter_factory):
    exporter = exporter_factory()
    huge = "m" * 200_000
    body = _metrics_request([({"session.id": "s" * 100_000 + "1", "model": huge}, 0.25),
                             ({"session.id": "s" * 100_000 + "2", "model": huge}, 0.25)])
    assert _post(exporter, "/v1/metrics", body, PROTOBUF).status_code == 200
    with claude_code(exporter, resource={"orchestrator.role": "x" * 5000}) as process:
        process.event("tool_result", "sess-h", tool_name="T" * 100_000, success="true",
                      duration_ms="5", tool_input="i" * 500_000)
        process.export()
    samples = exporter.metrics()
    values = [value for _, pairs in samples for _, value in pairs]
    assert max(len(value) for value in values) <= 128
    agents = {dict(pairs)["agent_id"] for name, pairs in samples
              if name == "orchestrator_agent_info"}
    assert len(agents) == 3
    assert cost(exporter) == pytest.approx(0.5, abs=1e-9)


def test_ten_thousand_sessions_stay_within_the_live_agent_and_label_caps(exporter_factory):
    exporter = exporter_factory(env={"EXPORTER_LIVE_AGENT_LIMIT": "5000"})
    body = _metrics_request([({"session.id": f"session-{number:05d}", "model": SONNET,
                               **USER}, 0.001) for number in range(10_000)])
    answer = _post(exporter, "/v1/metrics", body, PROTOBUF)
    assert answer.status_code == 200, answer.content
    assert _post(exporter, "/v1/metrics", body, PROTOBUF).status_code == 200  # a retry
    samples = exporter.metrics()
    assert sum(1 for name, _ in samples if name == "orchestrator_agent_info") == 5000
    assert samples[("orchestrator_exporter_live_agents_over_limit", frozenset())] == 5000
    created = {"source": "default", "role": "CLAUDE_CODE", "model": SONNET}
    assert samples[("orchestrator_agents_created_total", frozenset(created.items()))] == 10_000
    assert sum(value for (name, _), value in samples.items()
               if name == "orchestrator_cost_usd_total") == pytest.approx(10.0, abs=1e-6)
    assert httpx.get(f"{exporter.url}/ready").status_code == 200
