"""OTLP/HTTP on the wire: the two encodings, compression, and the answers.

An export request is an `Export{Metrics,Logs}ServiceRequest` in binary protobuf
(`application/x-protobuf`) or in protobuf's JSON mapping (`application/json`), gzip-compressed
or not. A refusal is answered with a `google.rpc.Status` in the request's encoding, a success
with the signal's `Export*ServiceResponse` (opentelemetry-proto's `otlp.md`, "OTLP/HTTP").
"""

from __future__ import annotations

import zlib
from typing import Final, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
# google.rpc.Code of each HTTP status we answer with.
_RPC_CODES: Final = {400: 3, 413: 8, 415: 3, 503: 14}
_WINDOW_BITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

MessageT = TypeVar("MessageT", bound=Message)


class OtlpError(Exception):
    """A request refused: its HTTP status and the `Status` message that explains why."""

    def __init__(self, status: int, message: str, *, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


def encoding_of(content_type: str | None) -> str:
    """The request's encoding from its Content-Type; 415 for any other."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media in (PROTOBUF, JSON):
        return media
    raise OtlpError(415, f"Content-Type must be {PROTOBUF} or {JSON}, not {media or 'absent'}")


def decompressed(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip, deflate), refused past `limit` bytes
    uncompressed as well: a small bomb must not cost the exporter its memory."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    bits = _WINDOW_BITS.get(coding)
    if bits is None:
        raise OtlpError(415, f"Content-Encoding must be gzip or identity, not {coding}")
    inflater = zlib.decompressobj(bits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise OtlpError(400, f"the {coding} body is corrupt: {error}") from None
    if len(data) > limit:
        raise OtlpError(413, f"the body exceeds {limit} bytes once decompressed")
    if not inflater.eof:
        raise OtlpError(400, f"the {coding} body is truncated")
    return data


def parsed(data: bytes, encoding: str, message: MessageT) -> MessageT:
    """`message` filled from the body; 400 naming the problem when it is not one."""
    try:
        if encoding == PROTOBUF:
            message.ParseFromString(data)
        elif not data.lstrip().startswith(b"{"):
            raise ValueError("an export request is a JSON object")
        else:
            # OTLP/JSON: receivers must ignore fields they do not know (a newer sender).
            json_format.Parse(data, message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as error:
        kind = "protobuf" if encoding == PROTOBUF else "JSON"
        raise OtlpError(400, f"the body is not a valid {message.DESCRIPTOR.name} in "
                        f"{kind}: {error}") from None
    return message


def encoded(message: Message, encoding: str) -> bytes:
    """A message in the request's encoding (JSON with OTLP's lowerCamelCase keys)."""
    if encoding == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()


def status_body(error: OtlpError, encoding: str) -> bytes:
    """The `google.rpc.Status` answering a refusal."""
    status = Status(code=_RPC_CODES.get(error.status, 3), message=error.message)
    return encoded(status, encoding)
