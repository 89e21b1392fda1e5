"""A stand-in for Slack's incoming webhooks: the one process boundary the tests cannot cross."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .network import LOOPBACK
from .polling import wait_until

WEBHOOK_PATH = "/services/T0TEST/B0TEST/stand-in-secret"


@dataclass(frozen=True)
class SlackMessage:
    """One POST received: `body` is the parsed JSON, or None when the body was not JSON."""

    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


class SlackReceiver:
    """Records every POST and answers like Slack does: 200 with the text "ok"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[SlackMessage] = []
        self._response = (200, "ok")
        # Port 0: the kernel picks a free port and we bind it in the same call, no race.
        self._server = _RecordingServer((LOOPBACK, 0), _Handler, self)
        # A short poll interval makes shutdown() return at once rather than after half a second.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="slack-receiver",
            daemon=True,
        )

    def start(self) -> SlackReceiver:
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """A webhook URL shaped like Slack's, to put into `api_url`."""
        return f"http://{LOOPBACK}:{self.port}{WEBHOOK_PATH}"

    @property
    def messages(self) -> list[SlackMessage]:
        """A copy of the messages received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def respond_with(self, status: int, text: str) -> None:
        """Answer later POSTs with this status and text, to play an unavailable Slack."""
        with self._lock:
            self._response = (status, text)

    def wait_for(
        self, predicate: Callable[[SlackMessage], bool] = lambda _: True, timeout: float = 10.0
    ) -> SlackMessage:
        """The first message (already received or arriving within `timeout`) matching."""

        def first_match() -> SlackMessage | None:
            return next((message for message in self.messages if predicate(message)), None)

        try:
            return wait_until(first_match, timeout, describe="a matching Slack message")
        except TimeoutError as error:
            raise AssertionError(f"{error}; received: {self.messages}") from None

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5.0)
        self._server.server_close()

    def record(self, message: SlackMessage) -> tuple[int, str]:
        """Keep a POST and return the (status, text) to answer it with."""
        with self._lock:
            self._messages.append(message)
            return self._response


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        receiver: SlackReceiver,
    ) -> None:
        super().__init__(address, handler)
        self.receiver = receiver


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        message = SlackMessage(
            path=self.path, headers=dict(self.headers.items()), body=_json_or_none(raw), raw=raw
        )
        status, text = self.server.receiver.record(message)
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request lines on stderr; the recorded messages say more."""


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
