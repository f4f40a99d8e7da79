"""The metric names and labels RabbitMQ's Prometheus plugin really emits for Dramatiq's queues.

Dashboards and alerts query these names, so they are checked against a real scrape: a throwaway node
(``rabbitmq_prometheus_node``, tests/environment/rabbitmq_node.py), never the machine's own RabbitMQ. Dramatiq declares
``orders``, ``orders.DQ`` (delay) and ``orders.XQ`` (dead letter); three messages go to ``orders`` and a raw
pika consumer with prefetch 2 holds two of them unacked, so the queue has 1 ready, 2 unacked, 3 in all and
1 consumer. Queues publish their stats once a second on that node, so the scrape is polled until it agrees.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from tests.environment.rabbitmq_node import RabbitmqNode
from tests.rabbitmq_scrape import DETAILED_QUEUE_PATH, family_names, samples, scraped_metric_names

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

QUEUE = "orders"
QUEUES = (QUEUE, f"{QUEUE}.DQ", f"{QUEUE}.XQ")
SENT, PREFETCH = 3, 2

# Per queue, labelled {vhost, queue}: what the Dramatiq dashboard and the backlog alerts use.
DETAILED = (
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages_unacked",
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_consumers",
)
# The same four, summed over the node's queues, on /metrics (no per-queue labels there by default).
AGGREGATED = {name: name.replace("_detailed_", "_") for name in DETAILED}
EXPECTED_ORDERS = {
    "rabbitmq_detailed_queue_messages_ready": SENT - PREFETCH,
    "rabbitmq_detailed_queue_messages_unacked": PREFETCH,
    "rabbitmq_detailed_queue_messages": SENT,
    "rabbitmq_detailed_queue_consumers": 1,
}


@dataclass
class Scrape:
    detailed: str
    aggregated: str

    def per_queue(self) -> dict[str, dict[str, float]]:
        """Detailed metric name -> queue -> value, asserting every sample is labelled exactly {vhost, queue}."""
        found: dict[str, dict[str, float]] = {name: {} for name in DETAILED}
        for sample in samples(self.detailed):
            if sample.name in found:
                assert set(sample.labels) == {"vhost", "queue"}, sample
                assert sample.labels["vhost"] == "/", sample
                found[sample.name][sample.labels["queue"]] = sample.value
        return found

    def totals(self) -> dict[str, float]:
        """Aggregated metric name -> its single unlabelled value on /metrics."""
        values: dict[str, float] = {}
        for sample in samples(self.aggregated):
            if sample.name in AGGREGATED.values():
                assert sample.labels == {}, sample
                values[sample.name] = sample.value
        return values

    def settled(self) -> bool:
        """Orders shows the predicted values, and every /metrics total is the sum over the detailed queues."""
        per_queue, totals = self.per_queue(), self.totals()
        if any(per_queue[name].get(QUEUE) != value for name, value in EXPECTED_ORDERS.items()):
            return False
        return all(totals.get(AGGREGATED[name]) == sum(per_queue[name].values()) for name in DETAILED)


def scrape(node: RabbitmqNode) -> Scrape:
    return Scrape(detailed=node.scrape(DETAILED_QUEUE_PATH), aggregated=node.scrape("/metrics"))


def scrape_until_settled(node: RabbitmqNode, timeout: float = 20.0) -> Scrape:
    """Scrape until the stats caught up (they are published every second), or return the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        result = scrape(node)
        if result.settled() or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.fixture
def orders_backlog(rabbitmq_prometheus_node: RabbitmqNode) -> Iterator[RabbitmqNode]:
    """Dramatiq's three queues for ``orders`` with 3 messages, 2 of them delivered unacked to 1 consumer."""
    node = rabbitmq_prometheus_node
    broker = RabbitmqBroker(url=node.amqp_url)

    @dramatiq.actor(broker=broker, queue_name=QUEUE)
    def place_order(order_id: int) -> None:
        raise AssertionError("never run: no worker")

    connection: pika.BlockingConnection | None = None
    try:
        broker.declare_queue(QUEUE)
        for order_id in range(SENT):
            place_order.send(order_id)

        connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        delivered: list[int] = []
        channel.basic_consume(
            QUEUE, on_message_callback=lambda _ch, method, _props, _body: delivered.append(method.delivery_tag)
        )
        deadline = time.monotonic() + 10
        while len(delivered) < PREFETCH and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        assert len(delivered) == PREFETCH, f"the consumer got {len(delivered)} of {PREFETCH} prefetched messages"

        yield node
    finally:
        if connection is not None:
            connection.close()  # the unacked messages go back to ready
        cleanup = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
        try:
            for queue in QUEUES:
                cleanup.channel().queue_delete(queue)
        finally:
            cleanup.close()
        broker.close()


def test_detailed_queue_metrics_have_the_names_labels_and_values_dashboards_use(orders_backlog: RabbitmqNode) -> None:
    result = scrape_until_settled(orders_backlog)
    per_queue = result.per_queue()

    assert {name: values.get(QUEUE) for name, values in per_queue.items()} == EXPECTED_ORDERS, result.detailed
    for name in DETAILED:
        # The delay and dead-letter queues are there, idle and without consumers.
        assert {queue: per_queue[name].get(queue) for queue in QUEUES[1:]} == {f"{QUEUE}.DQ": 0, f"{QUEUE}.XQ": 0}
    # Each /metrics total is the sum over the node's queues (per_queue() checked the {vhost, queue} labels).
    assert result.totals() == {AGGREGATED[name]: sum(per_queue[name].values()) for name in DETAILED}


def test_scraped_metric_names_cover_both_pages(rabbitmq_prometheus_node: RabbitmqNode) -> None:
    names = scraped_metric_names(rabbitmq_prometheus_node)

    assert set(DETAILED) <= names
    assert set(AGGREGATED.values()) | {"rabbitmq_queues", "rabbitmq_identity_info", "rabbitmq_build_info"} <= names
    # The detailed page declares only the two requested families (and its fixed info/telemetry ones).
    detailed = family_names(rabbitmq_prometheus_node.scrape(DETAILED_QUEUE_PATH))
    assert {name for name in detailed if name.startswith("rabbitmq_detailed_")} == {
        *DETAILED,
        "rabbitmq_detailed_queue_process_reductions_total",
    }
