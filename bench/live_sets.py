"""What an exporter holds in memory, set by set, and where its allocations grew: the debug mode
of `python -m bench.operations` (`--memory-debug`), for finding what grows with history.

It reads the exporter's private containers on purpose: these are the sets whose caps
docs/operations.md lists, and a set missing here is a set nobody watches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
import tracemalloc
from typing import Any

from exporter.series import CounterFamily, HistogramFamily
from exporter.service import Exporter

# sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_USED, ...): the bytes of one connection's page
# cache. Python's sqlite3 does not expose it; the library it loaded does.
_CACHE_USED = 1
# A sqlite3.Connection object starts with PyObject_HEAD (two words), then its `sqlite3 *db`.
_DB_OFFSET = 2 * ctypes.sizeof(ctypes.c_void_p)


def live_sets(exporter: Exporter) -> dict[str, int]:
    """The number of entries of every container that could grow with history."""
    state, ids = exporter.state, exporter.ledger._ids
    families: list[CounterFamily | HistogramFamily] = [*state.families.counters(),
                                                       *state.families.histograms()]
    label_sets = (state._usage_series, state._tool_series, state._step_series,
                  state._role_labels)
    return {
        "agents (not deleted)": len(state.agents),
        "live agents": len(state.live),
        "deleted agents remembered": len(state.deleted_agents),
        "tasks in flight": len(state.tasks),
        "ended tasks remembered": len(state.ended_tasks),
        "task -> agents": len(state.task_agents),
        "runs in flight": len(state.runs),
        "ended runs remembered": len(state.ended_runs),
        "steps": len(state.steps),
        "run -> steps": len(state.run_steps),
        "counter and histogram series": sum(len(family.values) for family in families),
        "label values": sum(len(values) for values in state.limiter.known.values()),
        "label combinations cached": sum(len(sets._seen) for sets in label_sets),
        "rendered label texts": len(exporter.renderer._labels),
        "recent event ids (dedup)": len(ids.recent),
        "ids being merged (dedup)": ids.merging_keys(),
    }


def _cache_used(connection: sqlite3.Connection) -> int:
    library = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    handle = ctypes.c_void_p.from_address(id(connection) + _DB_OFFSET).value
    current, highest = ctypes.c_int(), ctypes.c_int()
    library.sqlite3_db_status(ctypes.c_void_p(handle), _CACHE_USED, ctypes.byref(current),
                              ctypes.byref(highest), 0)
    return current.value


def sqlite_caches(exporter: Exporter) -> dict[str, int]:
    """The page cache bytes of the ledger writer's connection and of each pooled one."""
    caches: dict[str, int] = {}
    writer = exporter.ledger._writer
    if writer is not None:
        driver = writer.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        caches["writer"] = _cache_used(driver)
    pool = exporter.ledger.engine.pool
    for number, record in enumerate(list(pool._pool.queue)):  # type: ignore[attr-defined]
        connection = record.dbapi_connection
        if isinstance(connection, sqlite3.Connection):
            caches[f"pooled {number + 1}"] = _cache_used(connection)
    return caches


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot,
               count: int = 12) -> list[dict[str, Any]]:
    """The source lines whose live allocations grew most between two snapshots."""
    return [{"where": str(stat.traceback[0]), "grown_bytes": stat.size_diff,
             "bytes": stat.size, "blocks": stat.count}
            for stat in after.compare_to(before, "lineno")[:count]]
