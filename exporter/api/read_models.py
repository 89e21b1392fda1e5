"""The read API's answers as models: what the OpenAPI document tells clients to expect.

The routes build plain dicts and render them with orjson (validating thousands of rows through
these models would cost more than the query); tests check the answers against this schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Tokens(BaseModel):
    input: int
    output: int
    cache_read: int
    cache_creation: int


class AgentTokens(Tokens):
    total: int


class TaskItem(BaseModel):
    source: str
    task_id: str
    task_type: str
    status: str
    complexity: str | None
    mode: str | None
    analyst: Literal["included", "excluded"]
    description: str | None
    error: str | None
    cost_usd: float
    submitted_at: float | None
    started_at: float | None
    ended_at: float | None
    duration_seconds: float | None


class AgentItem(BaseModel):
    source: str
    agent_id: str
    role: str
    model: str
    status: str
    live: bool
    deleted: bool
    task_id: str | None
    task_type: str
    workflow: str
    cost_usd: float
    tokens: AgentTokens
    context_tokens: int
    context_limit_tokens: int
    context_fill: float | None = Field(description="context_tokens / context_limit_tokens")
    created_at: float
    last_activity: float


class ToolCalls(BaseModel):
    tool: str
    outcome: str
    count: int


class AgentFile(BaseModel):
    path: str
    read: int = Field(description="tool calls and reports that read it")
    written: int = Field(description="tool calls (Edit, Write, ...) and reports that wrote it")


class AgentFiles(BaseModel):
    items: list[AgentFile]
    distinct_files: int
    uncounted: int = Field(description="mentions of files beyond the first 10,000 distinct")


class AgentDetail(AgentItem):
    tool_calls: list[ToolCalls]
    task: TaskItem | None


class StepItem(BaseModel):
    step_id: str
    step: str
    agent: str
    agent_id: str | None
    status: str
    started_at: float | None
    ended_at: float | None
    duration_seconds: float | None
    retries: int


class RunItem(BaseModel):
    source: str
    run_id: str
    workflow: str
    status: str
    started_at: float | None
    ended_at: float | None
    duration_seconds: float | None
    planned_steps: list[str]


class RunDetail(RunItem):
    steps: list[StepItem] = Field(description="the timeline, by start time")


class TaskDetail(TaskItem):
    agents: list[AgentItem]
    agents_cost_usd: float
    runs: list[RunItem]


class AgentPage(BaseModel):
    items: list[AgentItem]
    next_cursor: str | None


class TaskPage(BaseModel):
    items: list[TaskItem]
    next_cursor: str | None


class RunPage(BaseModel):
    items: list[RunItem]
    next_cursor: str | None


class EventItem(BaseModel):
    seq: int = Field(description="the event's ledger sequence number")
    type: str
    timestamp: float | None
    event: dict[str, Any] = Field(description="the event as stored, canonical JSON")


class EventPage(BaseModel):
    items: list[EventItem]
    next_cursor: str | None


class LogItem(BaseModel):
    seq: int
    timestamp: float | None
    level: str
    message: str


class LogPage(BaseModel):
    items: list[LogItem]
    next_cursor: str | None


class CostItem(BaseModel):
    model_config = {"extra": "allow"}  # the group's own key: role, model, day, ...
    cost_usd: float
    tokens: Tokens


class CompletedTasks(BaseModel):
    tasks: int
    cost_usd: float
    mean_usd: float | None


class PerCompletedTask(BaseModel):
    included: CompletedTasks
    excluded: CompletedTasks


class CostAnswer(BaseModel):
    items: list[CostItem]
    group_by: str
    per_completed_task: PerCompletedTask = Field(
        description="completed tasks ended in the range, with and without ANALYST")


class Budget(BaseModel):
    name: str
    limit_usd: float
    period: str
    scope: dict[str, str]
    on_exceed: str
    source: Literal["config", "runtime"]
    spent_usd: float
    projected_usd: float
    state: Literal["ok", "warning", "exceeded"]
    period_start: float
    period_end: float


class AgentCounts(BaseModel):
    live: int
    by_status: dict[str, int]
    live_by_role: dict[str, int]


class TasksInFlight(BaseModel):
    total: int
    by_status: dict[str, int]


class Spend(BaseModel):
    today: float
    this_week: float
    this_month: float


class Status(BaseModel):
    agents: AgentCounts
    tasks_in_flight: TasksInFlight
    active_runs: int
    spend_usd: Spend
    events_accepted: int = Field(description="orchestrator_exporter_events_accepted_total")
    budgets: list[Budget]
    stream_subscribers: int
