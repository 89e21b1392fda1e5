"""A real Prometheus scrapes the exporter and answers PromQL over its metrics."""

from __future__ import annotations

import time

import pytest
from streams import mixed_stream

BUDGETS = """
budgets:
  - {name: fleet-daily, limit_usd: 1000, period: day}
  - {name: builders-monthly, limit_usd: 5000, period: month, scope: {role: BUILDER}}
"""


def scrape_config(target: str) -> str:
    return f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: orchestrator-exporter
    static_configs: [{{targets: ["{target}"]}}]
"""


@pytest.mark.integration
def test_prometheus_scrapes_the_exporter_and_answers_promql(exporter_factory, prometheus_factory):
    exporter = exporter_factory(config=BUDGETS)
    stream = mixed_stream(total=3000, start=time.time() - 600)
    for batch in stream.batches:
        assert exporter.post_events(batch).status_code == 200
    prometheus = prometheus_factory(scrape_config(exporter.url.removeprefix("http://")))
    up = prometheus.wait_for('up{job="orchestrator-exporter"}',
                             lambda result: bool(result) and result[0]["value"][1] == "1")
    assert up

    def scalar(promql: str) -> float:
        result = prometheus.wait_for(promql, bool)
        return float(result[0]["value"][1])

    expected_cost = sum(stream.expected.cost_nano_by_role.values()) / 1e9
    assert scalar("sum(orchestrator_cost_usd_total)") == pytest.approx(expected_cost, rel=1e-12)
    assert scalar('sum(orchestrator_tokens_total{type="cache_read"})') == \
        stream.expected.tokens_by_type["cache_read"]
    by_role = prometheus.wait_for("sum by (role) (orchestrator_cost_usd_total)", bool)
    assert {item["metric"]["role"] for item in by_role} == set(stream.expected.cost_nano_by_role)
    assert scalar("sum(orchestrator_agents)") == stream.expected.agents_created
    assert scalar('sum(orchestrator_tasks_total{status="completed"})') == \
        stream.expected.tasks_by_status["completed"]
    assert scalar('sum(orchestrator_tasks_total{analyst="included"})') > 0
    p95 = scalar("histogram_quantile(0.95, sum by (le, workflow) "
                 "(orchestrator_step_duration_seconds_bucket))")
    assert 0 < p95 <= 1800
    assert scalar('count(orchestrator_agent_info{status="pending"})') > 0
    assert scalar("max(orchestrator_agent_context_tokens / "
                  "orchestrator_agent_context_limit_tokens)") <= 1
    assert scalar('orchestrator_budget_limit_usd{budget="fleet-daily"}') == 1000
    assert scalar('orchestrator_budget_spent_usd{budget="fleet-daily"}') > 0
    builders = scalar('orchestrator_budget_spent_usd{budget="builders-monthly"}')
    assert builders == pytest.approx(stream.expected.cost_nano_by_role["BUILDER"] / 1e9,
                                     rel=1e-12)
    end = scalar('orchestrator_budget_period_end_timestamp_seconds{budget="fleet-daily"}')
    assert time.time() < end <= time.time() + 86_400
    assert scalar("sum(orchestrator_exporter_events_accepted_total)") == \
        stream.expected.unique_events
