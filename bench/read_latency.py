"""The read API's requests the benchmark times, and timing them over one keep-alive connection.

Ids for the single-entity reads come from walking the lists a page at a time (which also counts
the agents, tasks and runs); a request for one entity takes the next of up to `DISTINCT_IDS`
sampled ids each time, so the SQLite page cache holds no more of them than a busy reader's
would. The deep page starts at a cursor taken four fifths of the way down the default agents
list.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from bench.server import http_client

API = "/api/v1"
PAGE = 1_000  # the read API's largest page
DISTINCT_IDS = 200
DEEP_FRACTION = 0.8
COST_DAYS = 30
SECONDS_PER_DAY = 86_400
# The bench's tasks carry no description, so this search reads every task and matches none: the
# worst case of `q=`.
SEARCH_TEXT = "login"


@dataclass(slots=True)
class Endpoint:
    """One kind of request: its name in the table, whether it is a list, its paths in turn."""

    name: str
    is_list: bool
    paths: list[str]
    turn: int = 0

    def next_path(self) -> str:
        path = self.paths[self.turn % len(self.paths)]
        self.turn += 1
        return path


@dataclass(slots=True)
class Fleet:
    """What the walk found: counts, sampled ids, the deep cursor."""

    agents: int = 0
    tasks: int = 0
    runs: int = 0
    deep_row: int = 0
    deep_cursor: str | None = None
    agent_ids: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"agents": self.agents, "tasks": self.tasks, "runs": self.runs,
                "deep_row": self.deep_row}


def _pages(client: httpx.Client, url: str, path: str, size: int) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        query = f"?limit={size}" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(f"{url}{API}/{path}{query}")
        response.raise_for_status()
        page: dict[str, Any] = response.json()
        yield page
        cursor = page["next_cursor"]
        if cursor is None:
            return


def _walk(client: httpx.Client, url: str, path: str, key: str) -> list[str]:
    return [item[key] for page in _pages(client, url, path, PAGE) for item in page["items"]]


def explore(url: str, headers: dict[str, str], *, seed: int) -> Fleet:
    """Walk every list once: counts, up to `DISTINCT_IDS` random ids of each kind, a deep cursor
    in the agents list (default sort)."""
    rng = random.Random(seed)
    fleet = Fleet()
    with http_client() as client:
        client.headers.update(headers)
        agents = _walk(client, url, "agents", "agent_id")
        tasks = _walk(client, url, "tasks", "task_id")
        runs = _walk(client, url, "runs", "run_id")
        fleet.agents, fleet.tasks, fleet.runs = len(agents), len(tasks), len(runs)
        for ids, into in ((agents, fleet.agent_ids), (tasks, fleet.task_ids),
                          (runs, fleet.run_ids)):
            into.extend(rng.sample(ids, min(DISTINCT_IDS, len(ids))))
        # Pages of a tenth of the way each (at most the largest page) down to the deep row.
        target = int(len(agents) * DEEP_FRACTION)
        size = max(1, min(PAGE, target // 10))
        for page in _pages(client, url, "agents", size):
            fleet.deep_row += len(page["items"])
            fleet.deep_cursor = page["next_cursor"]
            if fleet.deep_row >= target:
                break
    return fleet


def endpoints(fleet: Fleet, *, now: float) -> list[Endpoint]:
    """The timed requests: the lists (with their filters, sorts and a deep page), one entity of
    each kind, an agent's events and the costs over 30 days."""
    since = int(now - COST_DAYS * SECONDS_PER_DAY)

    def each(template: str, ids: list[str]) -> list[str]:
        return [template.format(quote(entity_id, safe="")) for entity_id in ids]

    found = [
        Endpoint("GET /agents (default sort)", True, [f"{API}/agents"]),
        Endpoint("GET /agents?sort=-cost", True, [f"{API}/agents?sort=-cost"]),
        Endpoint("GET /agents?live=true", True, [f"{API}/agents?live=true"]),
        Endpoint("GET /agents?role=BUILDER", True, [f"{API}/agents?role=BUILDER"]),
        Endpoint(f"GET /agents?cursor= (row {fleet.deep_row:,})", True,
                 [f"{API}/agents?cursor={fleet.deep_cursor}"] if fleet.deep_cursor else []),
        Endpoint("GET /tasks?status=failed", True, [f"{API}/tasks?status=failed"]),
        Endpoint(f"GET /tasks?q={SEARCH_TEXT}", True, [f"{API}/tasks?q={SEARCH_TEXT}"]),
        Endpoint("GET /runs", True, [f"{API}/runs"]),
        Endpoint("GET /agents/{id}/events", True, each(f"{API}/agents/{{}}/events",
                                                        fleet.agent_ids)),
        Endpoint("GET /agents/{id}", False, each(f"{API}/agents/{{}}", fleet.agent_ids)),
        Endpoint("GET /tasks/{id}", False, each(f"{API}/tasks/{{}}", fleet.task_ids)),
        Endpoint("GET /runs/{id}", False, each(f"{API}/runs/{{}}", fleet.run_ids)),
        Endpoint(f"GET /costs?group_by=role&from=<{COST_DAYS} days ago>", False,
                 [f"{API}/costs?group_by=role&from={since}"]),
        Endpoint(f"GET /costs?group_by=day&from=<{COST_DAYS} days ago>", False,
                 [f"{API}/costs?group_by=day&from={since}"]),
    ]
    return [endpoint for endpoint in found if endpoint.paths]


def time_requests(url: str, headers: dict[str, str], catalogue: list[Endpoint],
                  rounds: int, *, seconds_at_most: float = math.inf) -> dict[str, list[float]]:
    """`rounds` rounds of one request to each endpoint in turn (fewer when `seconds_at_most`
    pass first), request to last byte; the seconds per endpoint. Any answer but 200 fails the
    run."""
    seconds: dict[str, list[float]] = {endpoint.name: [] for endpoint in catalogue}
    deadline = time.monotonic() + seconds_at_most
    with http_client() as client:
        client.headers.update(headers)
        client.get(f"{url}/health").raise_for_status()  # open the connection first
        for _ in range(rounds):
            if time.monotonic() > deadline:
                break
            for endpoint in catalogue:
                path = endpoint.next_path()
                started = time.perf_counter()
                response = client.get(f"{url}{path}")
                seconds[endpoint.name].append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code} "
                                       f"{response.text[:300]}")
    return seconds
