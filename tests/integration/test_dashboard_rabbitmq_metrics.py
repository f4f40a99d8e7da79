"""The RabbitMQ half of the dashboards and alert rules, checked against a real RabbitMQ scrape.

tests/unit/test_dashboards.py checks the app's metrics against a scrape of our own code; the queue depth
and consumer panels query RabbitMQ's ``rabbitmq_prometheus`` plugin, so their names and labels are checked
here against the pages of a throwaway RabbitMQ node (tests/environment/rabbitmq_node.py), the same two pages
compose/prometheus.yml scrapes.
"""

from __future__ import annotations

import pytest

from tests.environment.rabbitmq_node import RabbitmqNode
from tests.grafana_queries import Query, alert_queries, dashboard_queries, usage
from tests.rabbitmq_scrape import scraped_metric_names

pytestmark = pytest.mark.rabbitmq

# Every per-queue sample of the detailed page is labelled exactly so (tests/integration/test_rabbitmq_metrics.py).
QUEUE_LABELS = {"vhost", "queue"}
RABBITMQ_QUERIES = [
    query
    for query in dashboard_queries() + alert_queries()
    if any(name.startswith("rabbitmq_") for name in usage(query.expr).selectors)
]


def test_dashboards_and_alerts_do_watch_rabbitmq() -> None:
    wheres = " ".join(query.where for query in RABBITMQ_QUERIES)
    assert "tracedq-queues.json" in wheres
    assert "alert Dead-letter queue growing" in wheres and "alert No worker consuming a queue" in wheres


@pytest.mark.parametrize("query", RABBITMQ_QUERIES, ids=lambda q: q.where)
def test_rabbitmq_queries_use_names_and_labels_rabbitmq_emits(
    query: Query, rabbitmq_prometheus_node: RabbitmqNode
) -> None:
    emitted = scraped_metric_names(rabbitmq_prometheus_node)
    used = usage(query.expr)
    for name, matcher_labels in used.selectors.items():
        if name.startswith("rabbitmq_"):
            assert name in emitted, f"{query.where}: RabbitMQ has no {name}"
            assert matcher_labels <= QUEUE_LABELS, f"{query.where}: {name} has no {matcher_labels - QUEUE_LABELS}"
    if all(name.startswith("rabbitmq_") for name in used.selectors):
        assert used.grouping <= QUEUE_LABELS, f"{query.where}: no such label {used.grouping - QUEUE_LABELS}"
