"""Every parameter and body the API takes has a size bound, read off its OpenAPI document.

A parameter's string has a maxLength (or an enum, or an anchored pattern with no open-ended
repetition), an integer a maximum, an array a maxItems. A request body's schema is bounded the
same way all the way down, objects by maxProperties or a closed set of properties. Every body
is also read by the exporter itself and refused past a byte cap: `RAW_BODIES` names each one,
its cap, and the parts of its schema that the cap alone bounds (a command's `args`, passed on as
they are); a real exporter answers 413 one byte past each cap, and not at the cap.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from support import ExporterFactory
from support.network import http_client

from exporter.api import create_app
from exporter.api.budgets import MAX_BUDGET_BYTES
from exporter.api.control import MAX_COMMAND_BYTES, MAX_WEBHOOK_BYTES
from exporter.api.hooks import MAX_HOOK_BYTES
from exporter.service import build_exporter
from exporter.settings import Settings
from exporter.tokens import TokenRegistry

# EXPORTER_MAX_BODY_BYTES for the exporter started here: small, so that bodies past it are too.
BODY_LIMIT = 4096


@dataclass(frozen=True)
class RawBody:
    """An endpoint that reads its body itself: refused with 413 past `cap` bytes (None:
    EXPORTER_MAX_BODY_BYTES); `free` names the parts of its schema only the cap bounds."""

    cap: int | None
    free: tuple[str, ...] = ()
    content_type: str = "application/json"


# The body itself, of any size and with any fields: only the cap bounds it.
WHOLE = ("(body)", "*")
RAW_BODIES: dict[tuple[str, str], RawBody] = {
    # A JSON event, a JSON array or NDJSON, decoded by our parser: the events' own contract
    # (exporter/events.py) bounds each field once decoded; the body limit bounds the batch.
    ("post", "/api/v1/events"): RawBody(None, WHOLE),
    # OTLP: protobuf or OTLP/JSON, before and after gzip (exporter/otlp/wire.py).
    ("post", "/v1/metrics"): RawBody(None, WHOLE, "application/x-protobuf"),
    ("post", "/v1/logs"): RawBody(None, WHOLE, "application/x-protobuf"),
    # Claude Code's hook input as its hooks pass it: any fields Claude Code adds, tool inputs
    # and answers of tens of kilobytes (exporter/api/hooks.py).
    ("post", "/api/v1/hooks/claude-code"): RawBody(MAX_HOOK_BYTES, WHOLE),
    # Alertmanager's own payload: its alerts' labels and annotations are Alertmanager's.
    ("post", "/api/v1/alertmanager/webhook"): RawBody(MAX_WEBHOOK_BYTES, WHOLE),
    # `args` are the orchestrator's, passed on as they are (MAX_ARGS_BYTES of them).
    ("post", "/api/v1/commands"): RawBody(MAX_COMMAND_BYTES, ("args",)),
    ("post", "/api/v1/tasks/{task_id}/cancel"): RawBody(MAX_COMMAND_BYTES, ("args",)),
    # `detail` is the orchestrator's answer, stored as it is.
    ("post", "/api/v1/commands/{command_id}/result"): RawBody(MAX_COMMAND_BYTES, ("detail",)),
    ("post", "/api/v1/budgets"): RawBody(MAX_BUDGET_BYTES),
    ("put", "/api/v1/budgets/{name}"): RawBody(MAX_BUDGET_BYTES),
}
BODY_METHODS = frozenset({"post", "put", "patch"})
# A pattern bounds its string when anchored at both ends with no open-ended repetition (the
# characters of a class, `[+#]`, repeat nothing).
_CLASS = re.compile(r"\[(?:\\.|[^\]\\])*\]")
_OPEN_ENDED = re.compile(r"(?<!\\)[*+]|\{\d+,\}")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ledger = tmp_path_factory.mktemp("bounds") / "ledger.db"
    exporter = build_exporter(Settings(database_url=f"sqlite:///{ledger}"),
                              registry=CollectorRegistry())
    return create_app(exporter, tokens=TokenRegistry(fixed=[])).openapi()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def unbounded(schema: dict[str, Any], components: dict[str, Any],
              where: str = "") -> Iterator[str]:
    """The places in `schema` where a value of any size fits (`where` names each)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        yield from unbounded(components[name], components, where)
        return
    for combined in ("anyOf", "oneOf", "allOf"):
        for part in schema.get(combined, []):
            yield from unbounded(part, components, where)
    if any(key in schema for key in ("anyOf", "oneOf", "allOf", "enum", "const")):
        return
    kind = schema.get("type")
    if kind == "string":
        pattern = schema.get("pattern", "")
        closed = pattern.startswith("^") and pattern.endswith("$") and \
            _OPEN_ENDED.search(_CLASS.sub("", pattern)) is None
        if "maxLength" not in schema and not closed:
            yield f"{where or '(body)'}: string without maxLength"
    elif kind == "integer":
        if "maximum" not in schema and "exclusiveMaximum" not in schema:
            yield f"{where or '(body)'}: integer without maximum"
    elif kind == "array":
        if "maxItems" not in schema:
            yield f"{where or '(body)'}: array without maxItems"
        yield from unbounded(schema.get("items", {}), components, f"{where}[]")
    elif kind == "object" or "properties" in schema:
        yield from _object(schema, components, where)
    elif kind not in ("number", "boolean", "null"):
        yield f"{where or '(body)'}: any value"


def _object(schema: dict[str, Any], components: dict[str, Any], where: str) -> Iterator[str]:
    prefix = f"{where}." if where else ""
    for name, part in schema.get("properties", {}).items():
        yield from unbounded(part, components, prefix + name)
    extra = schema.get("additionalProperties", True)
    if extra is False:
        return
    if "maxProperties" not in schema:
        yield f"{where or '(body)'}: object without maxProperties"
    if isinstance(extra, dict):
        yield from unbounded(extra, components, f"{prefix}*")
    else:
        yield f"{prefix}*: any value"


def _free(problem: str, free: tuple[str, ...]) -> bool:
    place = problem.split(":", 1)[0]
    return any(place == name or place.startswith((f"{name}.", f"{name}[")) for name in free)


def test_every_parameter_has_a_size_bound(document):
    components = document["components"]["schemas"]
    problems = [f"{method.upper()} {path} {parameter['in']} {problem}"
                for method, path, operation in operations(document)
                for parameter in operation.get("parameters", [])
                for problem in unbounded(parameter["schema"], components, parameter["name"])]
    assert problems == [], "\n".join(problems)


def test_every_body_is_bounded_by_its_schema_or_listed_with_its_cap(document):
    components = document["components"]["schemas"]
    problems: list[str] = []
    taking_bodies = set()
    for method, path, operation in operations(document):
        body = operation.get("requestBody")
        if body is None and method not in BODY_METHODS:
            continue
        taking_bodies.add((method, path))
        free = RAW_BODIES[(method, path)].free if (method, path) in RAW_BODIES else ()
        for media, content in (body or {"content": {}})["content"].items():
            problems += [f"{method.upper()} {path} {media} {problem}"
                         for problem in unbounded(content.get("schema", {}), components)
                         if not _free(problem, free)]
    assert problems == [], "\n".join(problems)
    assert set(RAW_BODIES) == taking_bodies  # no endpoint left out, none listed that is gone


def test_a_body_one_byte_past_its_cap_is_refused(exporter_factory: ExporterFactory):
    exporter = exporter_factory(env={"EXPORTER_MAX_BODY_BYTES": str(BODY_LIMIT),
                                     "EXPORTER_API_RATE_PER_SECOND": "100000",
                                     "EXPORTER_API_BURST": "100000"})
    answers: dict[str, tuple[int, int, int]] = {}
    with http_client() as client:
        for (method, path), raw in RAW_BODIES.items():
            cap = BODY_LIMIT if raw.cap is None else raw.cap
            url = exporter.url + path.format(task_id="t-1", command_id="c-1", name="b-1")
            headers = {"Authorization": f"Bearer {exporter.token}",
                       "Content-Type": raw.content_type}

            def send(body: bytes | Iterator[bytes], url: str = url,
                     headers: dict[str, str] = headers, method: str = method) -> int:
                return client.request(method, url, content=body, headers=headers).status_code

            at_cap = send(b" " * cap)
            # Declared by Content-Length, and streamed in chunks with no length declared.
            past_cap = send(b" " * (cap + 1))
            streamed = send(iter([b" " * 1024] * (cap // 1024) + [b" " * (cap % 1024 + 1)]))
            answers[f"{method} {path}"] = (at_cap, past_cap, streamed)
    assert {name: (at_cap != 413 and at_cap < 500, past_cap, streamed)
            for name, (at_cap, past_cap, streamed) in answers.items()} == \
        {name: (True, 413, 413) for name in answers}, answers


def test_the_walk_finds_every_kind_of_unbounded_value():
    name = {"type": "string", "maxLength": 128}
    schema = {"type": "object", "additionalProperties": False, "properties": {
        "text": {"type": "string"}, "named": name, "open": {"type": "string", "pattern": "^a+$"},
        "closed": {"type": "string", "pattern": "^[a+]{1,8}$"}, "count": {"type": "integer"},
        "list": {"type": "array", "items": name}, "bag": {"type": "object"},
        "map": {"type": "object", "maxProperties": 4, "additionalProperties": {}},
        "either": {"anyOf": [{"$ref": "#/components/schemas/Thing"}, {"type": "null"}]},
        "anything": {}}}
    components = {"Thing": {"type": "object", "properties": {"id": name}}}
    assert sorted(unbounded(schema, components)) == [
        "anything: any value", "bag.*: any value", "bag: object without maxProperties",
        "count: integer without maximum", "either.*: any value",
        "either: object without maxProperties", "list: array without maxItems", "map.*: any value",
        "open: string without maxLength", "text: string without maxLength"]
