"""Running commands in an orchestrator: handlers per kind, each command done once by its id.

Delivery is at least once (a command unanswered is delivered again), so the runner remembers
the outcome of the commands it ran and answers a repeat with it instead of running it again.
Two ways to take commands, with the same handlers:

- in the exporter's process: `ControlChannel(exporter.commands, handlers).start()`;
- over HTTP: `ExporterClient.serve_commands(handlers)` (long poll of `/api/v1/commands/next`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from exporter.control.commands import Command
from exporter.control.queue import CommandConflictError, CommandQueue

log = logging.getLogger(__name__)

# handler(command as a dict) -> a JSON-able detail; raising fails the command with its message.
Handler = Callable[[dict[str, Any]], Any]
Outcome = tuple[str, Any]
REMEMBERED: Final = 10_000
IDLE_SECONDS: Final = 0.5


class CommandRunner:
    """Runs a command with the handler of its kind, once per command id."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        self.handlers = dict(handlers)
        self._done: OrderedDict[str, Outcome] = OrderedDict()
        self._lock = threading.Lock()

    def run(self, command: dict[str, Any]) -> Outcome:
        """("succeeded" | "failed" | "rejected", detail); a command run before gets its first
        outcome. Rejected: no handler for its kind."""
        command_id = str(command["id"])
        with self._lock:
            if command_id in self._done:
                return self._done[command_id]
        handler = self.handlers.get(str(command["kind"]))
        outcome: Outcome
        if handler is None:
            outcome = ("rejected", f"this orchestrator has no handler for {command['kind']}")
        else:
            try:
                outcome = ("succeeded", handler(command))
            except Exception as error:  # the orchestrator's failure is the command's result
                log.warning("command %s (%s) failed: %s", command_id, command["kind"], error)
                outcome = ("failed", str(error) or type(error).__name__)
        with self._lock:
            self._done[command_id] = outcome
            if len(self._done) > REMEMBERED:
                self._done.popitem(last=False)
        return outcome


class ControlChannel:
    """Takes commands from the queue in the exporter's own process and runs them."""

    def __init__(self, queue: CommandQueue, handlers: Mapping[str, Handler]) -> None:
        self.queue = queue
        self.runner = CommandRunner(handlers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self, kind: str, handler: Handler) -> ControlChannel:
        """Handle commands of `kind` with `handler` (replacing any before)."""
        self.runner.handlers[kind] = handler
        return self

    def start(self) -> ControlChannel:
        self._thread = threading.Thread(target=self._loop, name="control-channel", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_pending(self) -> int:
        """Run every command due now; how many."""
        count = 0
        while (command := self.queue.take_next()) is not None:
            self._finish(command)
            count += 1
        return count

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_pending()
            except Exception:  # the ledger may be busy or gone for a moment: try again
                log.exception("taking commands failed")
                ran = 0
            if not ran:
                self._stop.wait(IDLE_SECONDS)

    def _finish(self, command: Command) -> None:
        status, detail = self.runner.run(command.as_dict())
        try:
            self.queue.finish(command.id, status, detail)
        except CommandConflictError as error:  # expired meanwhile, say
            log.warning("result of command %s not recorded: %s", command.id, error)
