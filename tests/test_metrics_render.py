"""exporter/metrics.py: which parts of a scrape hold the state's lock."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector
from support import parse_metrics

from exporter.fairlock import FairLock
from exporter.metrics import MetricsRenderer
from exporter.pricing import load_price_table
from exporter.state import FleetState


class LockProbe(Collector):
    """A gauge of whether `lock` was held while it was collected (1 or 0)."""

    def __init__(self, name: str, lock: FairLock) -> None:
        self.name, self.lock = name, lock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Held by the collecting thread itself, or nobody could take it now.
        free = self.lock._lock.acquire(blocking=False)
        if free:
            self.lock.release()
        yield GaugeMetricFamily(self.name, "lock held while collected", value=0 if free else 1)


def test_the_own_registry_is_rendered_under_the_lock_and_ledger_queries_outside_it() -> None:
    lock = FairLock()
    own, queried = CollectorRegistry(), CollectorRegistry()
    own.register(LockProbe("own_probe", lock))
    queried.register(LockProbe("queried_probe", lock))
    renderer = MetricsRenderer(state=FleetState(prices=load_price_table(), budgets=(),
                                                label_value_limit=100),
                               lock=lock, registry=own, queried=queried, live_agent_limit=10)
    samples = parse_metrics(renderer.render().decode())
    assert samples[("own_probe", frozenset())] == 1
    assert samples[("queried_probe", frozenset())] == 0
    # And the lock is free again.
    assert lock._lock.acquire(blocking=False)
