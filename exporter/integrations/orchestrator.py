"""The Python "Claude Multi-Agent Orchestrator" (jeffjacobsen/orchestrator), in its own process.

Three live sources, each sending canonical events to a sink: `MonitorCallback.emit` (the
exporter in the same process) or `ExporterClient.emit` (over HTTP).

    sink = ExporterClient("http://127.0.0.1:8088", token).emit
    executor = WorkflowExecutor(manager, monitor, progress_tracker=ExporterTracker(sink))
    follow_metrics_collector(orchestrator.metrics, sink)       # agent_created / agent_deleted
    Agent(..., progress_callback=progress_callback(sink, agent_id, role="builder"))

Nothing here ever raises into the orchestrator: a failing sink is logged and the agent goes on.

`OrchestratorControl` is the other way: the handlers that carry the exporter's commands out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Final

from exporter.integrations.emitter import Emitter, Sink

log = logging.getLogger(__name__)

VIA: Final = "orchestrator_progress"


class _Emitter(Emitter):
    """The orchestrator's events, and its agents' progress calls made canonical."""

    def __init__(self, sink: Sink, source: str | None) -> None:
        super().__init__(sink, source, VIA)

    def progress(self, agent_id: str, event: str, data: object) -> None:
        """One `progress_callback(event, data)` call of the agent's."""
        if event in ("started", "thinking"):
            self("agent.status_changed", agent_id=agent_id, status="running")
        elif event == "tool_call":
            # The callback sees the call, never its result.
            self("agent.tool_call", agent_id=agent_id, tool=str(data), outcome="unknown")
        elif event == "completed":
            self("agent.status_changed", agent_id=agent_id, status="completed")
        elif event == "failed":
            self("agent.status_changed", agent_id=agent_id, status="failed")
            self("log.entry", agent_id=agent_id, level="error", message=str(data))


def progress_callback(sink: Sink, agent_id: str, *, role: str | None = None,
                      source: str | None = None) -> Callable[[str, str], None]:
    """`Agent(progress_callback=...)` for one agent: `callback(event, data)`, synchronous.

    With `role`, the agent is announced at its first `started` (the executor's own wrapper does
    the same through the tracker).
    """
    emit = _Emitter(sink, source)
    announced = threading.Event()

    def callback(event: str, data: str = "") -> None:
        if role is not None and event == "started" and not announced.is_set():
            announced.set()
            emit("agent.created", agent_id=agent_id, role=role)
        emit.progress(agent_id, event, data)

    return callback


def async_progress_callback(sink: Sink, agent_id: str, *, role: str | None = None,
                            source: str | None = None,
                            ) -> Callable[[str, str], Coroutine[Any, Any, None]]:
    """The same as an `async def`: the agent awaits the coroutine it returns."""
    callback = progress_callback(sink, agent_id, role=role, source=source)

    async def asynchronous(event: str, data: str = "") -> None:
        callback(event, data)

    return asynchronous


class ExporterTracker:
    """The executor's `progress_tracker`, every method synchronous.

    The executor awaits the others only when they return a coroutine, and calls
    `agent_completed` without await: a plain method is the one form that works for all of them.
    In sequential mode the executor calls `agent_completed` for failed agents too; their cost
    is counted and their status stays failed.
    """

    def __init__(self, sink: Sink, *, source: str | None = None) -> None:
        self._emit = _Emitter(sink, source)
        self._failed: set[str] = set()
        self._lock = threading.Lock()

    def start(self, workflow_steps: object = None) -> None:
        """Called by `Orchestrator.execute`; the exporter needs nothing from it."""

    def stop(self) -> None:
        """Called at the end of `Orchestrator.execute`."""

    def agent_created(self, agent_id: str, name: str, role: str) -> None:
        self._emit("agent.created", agent_id=agent_id, role=role)

    def agent_started(self, agent_id: str) -> None:
        self._emit.progress(agent_id, "started", "")

    def thinking(self, agent_id: str) -> None:
        self._emit.progress(agent_id, "thinking", "")

    def tool_call(self, agent_id: str, tool_name: str) -> None:
        self._emit.progress(agent_id, "tool_call", tool_name)

    def agent_failed(self, agent_id: str, error: str) -> None:
        with self._lock:
            self._failed.add(agent_id)
        self._emit.progress(agent_id, "failed", error)

    def agent_completed(self, agent_id: str, cost: float) -> None:
        """`cost` is the agent's running total in USD: only its increase is counted."""
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            self._emit("agent.usage", agent_id=agent_id, cost_usd=cost, totals=True)
        with self._lock:
            failed = agent_id in self._failed
        if not failed:
            self._emit.progress(agent_id, "completed", "")


def follow_metrics_collector(collector: Any, sink: Sink, *,
                             source: str | None = None) -> Callable[[], None]:
    """Forward `MetricsCollector.events` as they are recorded, and those recorded before.

    The orchestrator's `register_status_callback` keeps callbacks that nothing calls, so this
    wraps the collector's own `record_event`. Returns a function that stops following.
    """
    original = collector.record_event
    lock = threading.Lock()
    sent = 0

    def forward_new() -> None:
        nonlocal sent
        with lock:
            entries, sent = list(collector.events[sent:]), len(collector.events)
        for entry in entries:
            try:
                sink({**entry, **({"source": source} if source is not None else {})})
            except Exception:
                log.exception("could not send a monitor event to the exporter")

    def record_event(event_type: str, data: dict[str, Any]) -> None:
        original(event_type, data)
        forward_new()

    collector.record_event = record_event
    forward_new()

    def stop() -> None:
        collector.record_event = original

    return stop


class AdmissionGate:
    """Pauses by scope (`fleet.pause` / `fleet.resume`): the orchestrator asks before new work."""

    def __init__(self) -> None:
        self._paused: set[tuple[tuple[str, str], ...]] = set()
        self._lock = threading.Lock()

    def pause(self, scope: Mapping[str, str]) -> None:
        with self._lock:
            self._paused.add(_scope(scope))

    def resume(self, scope: Mapping[str, str]) -> None:
        with self._lock:
            self._paused.discard(_scope(scope))

    def allows(self, **dimensions: str) -> bool:
        """False when a paused scope matches every one of its keys (an empty scope: all)."""
        with self._lock:
            paused = list(self._paused)
        return not any(all(dimensions.get(key) == value for key, value in scope)
                       for scope in paused)


def _scope(scope: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((key, value.upper() if key == "role" else value)
                        for key, value in scope.items() if key != "source"))


class OrchestratorControl:
    """Commands for the Python orchestrator, by its public API and what it lacks.

    It has `execute(prompt, task_type, execution_mode)`, `create_agent(role, name,
    system_prompt)` and `delete_agent(agent_id)`, and nothing to cancel or pause: a task runs
    here as an `asyncio.Task` registered under its task id (cancel), and new tasks pass an
    admission gate (pause). The orchestrator's coroutines run on `loop` (its event loop); the
    handlers are called from the command thread.
    """

    def __init__(self, orchestrator: Any, loop: asyncio.AbstractEventLoop, *,
                 timeout: float = 60.0) -> None:
        self.orchestrator = orchestrator
        self.loop = loop
        self.timeout = timeout
        self.gate = AdmissionGate()
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self._lock = threading.Lock()

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {"task.submit": self.submit, "task.cancel": self.cancel,
                "fleet.pause": self.pause, "fleet.resume": self.resume,
                "agent.create": self.create_agent, "agent.delete": self.delete_agent}

    def submit(self, command: dict[str, Any]) -> dict[str, Any]:
        args, target = command["args"], command["target"]
        task_type = str(args.get("task_type") or target.get("task_type") or "custom")
        if not self.gate.allows(task_type=task_type):
            raise PermissionError(f"new {task_type} tasks are paused")
        task_id = str(args.get("task_id") or command["id"])
        coroutine = self.orchestrator.execute(str(args.get("prompt", "")), task_type,
                                              str(args.get("execution_mode", "sequential")))
        self._call(self._register(task_id, coroutine))
        return {"task_id": task_id}

    async def _register(self, task_id: str, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        with self._lock:
            self.tasks[task_id] = task
        task.add_done_callback(lambda _done: self._forget(task_id, task))

    def _forget(self, task_id: str, task: asyncio.Task[Any]) -> None:
        with self._lock:
            if self.tasks.get(task_id) is task:
                del self.tasks[task_id]

    def cancel(self, command: dict[str, Any]) -> dict[str, Any]:
        task_id = command["target"]["task_id"]
        with self._lock:
            task = self.tasks.get(task_id)
        if task is None:
            raise LookupError(f"no task {task_id} runs here")
        self.loop.call_soon_threadsafe(task.cancel)
        return {"task_id": task_id, "cancelled": True}

    def pause(self, command: dict[str, Any]) -> dict[str, Any]:
        self.gate.pause(command["target"])
        return {"paused": command["target"]}

    def resume(self, command: dict[str, Any]) -> dict[str, Any]:
        self.gate.resume(command["target"])
        return {"resumed": command["target"]}

    def create_agent(self, command: dict[str, Any]) -> dict[str, Any]:
        args = command["args"]
        role = args.get("role") or command["target"].get("role")
        agent_id = self._call(self.orchestrator.create_agent(
            role, args.get("name"), args.get("system_prompt")))
        return {"agent_id": agent_id}

    def delete_agent(self, command: dict[str, Any]) -> dict[str, Any]:
        agent_id = command["target"]["agent_id"]
        return {"agent_id": agent_id, "deleted": bool(self._call(
            self.orchestrator.delete_agent(agent_id)))}

    def _call(self, result: Any) -> Any:
        """A plain result as it is; a coroutine run on the orchestrator's loop, waited for."""
        if not asyncio.iscoroutine(result):
            return result
        return asyncio.run_coroutine_threadsafe(result, self.loop).result(self.timeout)
