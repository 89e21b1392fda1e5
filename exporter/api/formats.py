"""JSON, CSV or NDJSON for the read API's lists, chosen by `format=` or the Accept header.

CSV and NDJSON are streamed a page at a time, so a list of any size needs constant memory. A
CSV row flattens nested objects into dotted columns (`tokens.input`) and writes lists and other
objects as JSON text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any, Final, Literal

import orjson

from exporter.api.errors import ApiError

Format = Literal["json", "csv", "ndjson"]
MEDIA_TYPES: Final[dict[str, str]] = {"json": "application/json", "csv": "text/csv",
                                      "ndjson": "application/x-ndjson"}
_BY_MEDIA: Final = {"application/json": "json", "text/csv": "csv",
                    "application/x-ndjson": "ndjson", "application/ndjson": "ndjson"}
LIST_FORMATS: Final = {"200": {"content": {"text/csv": {"schema": {"type": "string"}},
                                           "application/x-ndjson": {
                                               "schema": {"type": "string"}}}}}


def negotiate(requested: str | None, accept: str) -> Format:
    """`format` wins; then the first media type of Accept we know; JSON otherwise."""
    if requested is not None:
        if requested not in MEDIA_TYPES:
            raise ApiError(422, "invalid_query", "format must be json, csv or ndjson",
                           [{"field": "format", "reason": "must be json, csv or ndjson"}])
        return requested  # type: ignore[return-value]
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in _BY_MEDIA:
            return _BY_MEDIA[media]  # type: ignore[return-value]
    return "json"


def _flat(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix == "" and key != "event":
            flat.update(_flat(value, f"{name}."))
        elif isinstance(value, list | dict):
            flat[name] = orjson.dumps(value).decode()
        elif value is None:
            flat[name] = ""
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        else:
            flat[name] = value
    return flat


def csv_lines(items: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """A header from the first item's columns, then one line per item."""
    buffer = io.StringIO()
    writer: csv.DictWriter[str] | None = None
    for item in items:
        row = _flat(item)
        if writer is None:
            writer = csv.DictWriter(buffer, fieldnames=list(row), extrasaction="ignore",
                                    lineterminator="\n")
            writer.writeheader()
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def ndjson_lines(items: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(orjson.dumps(item))
        if len(chunk) >= 1_000:
            yield b"\n".join(chunk) + b"\n"
            chunk = []
    if chunk:
        yield b"\n".join(chunk) + b"\n"


def encoded(items: Iterable[dict[str, Any]], form: Format) -> Iterator[bytes]:
    return csv_lines(items) if form == "csv" else ndjson_lines(items)
