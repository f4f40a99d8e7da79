"""Delays longer than RabbitMQ's consumer timeout (Dramatiq #827), on a throwaway node whose timeout is 3 s.

The node checks unacked deliveries every 0.5 s (``channel_tick_interval``; 60 s by default), so a delivery held
past 3 s closes its channel within a second. With parking (messaging/delay_parking.py) a message delayed to three
times the timeout is processed once, after its eta, and no delivery of any queue is ever redelivered; without it
(the control) the same node closes the delay queue's channel and redelivers what it held.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import dramatiq
import pika
import pytest
from dramatiq.broker import MessageProxy
from dramatiq.middleware import default_middleware
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from messaging.broker import TracedqBroker
from messaging.delay_parking import park_queue_name
from messaging.queue_declaration import QueueType
from observability import Tracing, install
from tests.environment.polling import wait_until
from tests.environment.rabbitmq_node import RabbitmqNode, throwaway_rabbitmq_node
from tests.spans import is_child, named, trace_id

pytestmark = pytest.mark.rabbitmq
tracer = trace.get_tracer("tests")

CONSUMER_TIMEOUT_MS = 3000
LONG_DELAY_MS = 3 * CONSUMER_TIMEOUT_MS


@pytest.fixture(scope="module")
def short_timeout_node() -> Iterator[RabbitmqNode]:
    node = RabbitmqNode(
        extra_config=f"consumer_timeout = {CONSUMER_TIMEOUT_MS}",
        advanced_config="[{rabbit, [{channel_tick_interval, 500}]}].",
    )
    with throwaway_rabbitmq_node(node) as started:
        yield started


class Deliveries(dramatiq.Middleware):
    """Every delivery a worker sees, delayed (from ``.DQ``) or processed: (message id, queue, redelivered)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()

    def _record(self, message: MessageProxy) -> None:
        with self.lock:
            self.seen.append((message.message_id, message.queue_name, bool(getattr(message, "redelivered", False))))

    def before_delay_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._record(message)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._record(message)

    def redelivered(self) -> list[tuple[str, str, bool]]:
        with self.lock:
            return [seen for seen in self.seen if seen[2]]


def _broker(
    node: RabbitmqNode, *, consumer_timeout_ms: int, deliveries: Deliveries, queue_type: QueueType = "classic"
) -> TracedqBroker:
    broker = TracedqBroker(
        url=node.amqp_url,
        confirm_delivery=True,
        consumer_timeout_ms=consumer_timeout_ms,
        queue_type=queue_type,
        middleware=[factory() for factory in default_middleware] + [deliveries],
    )
    install(broker, Tracing())
    broker.emit_after("process_boot")
    return broker


def _queue_depth(node: RabbitmqNode, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(node.amqp_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_messages_delayed_past_the_consumer_timeout_run_once_and_nothing_is_redelivered(
    short_timeout_node: RabbitmqNode,
    span_exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    queue_type: QueueType,
) -> None:
    """Quorum too: its per-message TTL and dead-lettering (RabbitMQ 3.10+) carry the park queue the same way."""
    queue = f"long_{uuid.uuid4().hex[:10]}"
    deliveries = Deliveries()
    broker = _broker(
        short_timeout_node, consumer_timeout_ms=CONSUMER_TIMEOUT_MS, deliveries=deliveries, queue_type=queue_type
    )
    ran: dict[str, list[float]] = {}
    lock = threading.Lock()

    @dramatiq.actor(actor_name=f"later_{queue}", queue_name=queue, broker=broker)
    def later(label: str) -> None:
        with lock:
            ran.setdefault(label, []).append(time.time())

    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    caplog.set_level(logging.WARNING, logger="dramatiq")
    sent: dict[str, Any] = {}
    try:
        for n in range(3):
            with tracer.start_as_current_span(f"request {n}"):
                sent[f"long{n}"] = later.send_with_options(args=(f"long{n}",), delay=LONG_DELAY_MS)
        # Short delays share the delay queue's channel with the long ones all along: RabbitMQ would redeliver
        # them with it if it closed that channel.
        deadline = time.monotonic() + LONG_DELAY_MS / 1000
        n = 0
        while time.monotonic() < deadline:
            sent[f"short{n}"] = later.send_with_options(args=(f"short{n}",), delay=700)
            n += 1
            time.sleep(0.4)
        assert wait_until(lambda: len(ran) == len(sent), timeout=30), f"processed {sorted(ran)} of {sorted(sent)}"
        time.sleep(1.5)  # three of the node's checks: a late redelivery would show up now
    finally:
        worker.stop()
        broker.close()

    assert {label: len(times) for label, times in ran.items()} == dict.fromkeys(sent, 1)
    for label, message in sent.items():
        eta = message.options["eta"] / 1000
        assert ran[label][0] >= eta - 0.01, f"{label} ran before its eta"
    assert deliveries.redelivered() == []
    assert [r.getMessage() for r in caplog.records if "connection error" in r.getMessage()] == []
    assert _queue_depth(short_timeout_node, park_queue_name(queue)) == 0  # declared, used, drained

    spans = span_exporter.get_finished_spans()
    for n in range(3):
        request = next(s for s in spans if s.name == f"request {n}")
        send = next(s for s in named(spans, f"send {queue}.DQ") if is_child(s, request))
        hop = next(s for s in named(spans, f"send {queue}") if is_child(s, send))
        process = [s for s in named(spans, f"process {queue}") if is_child(s, hop)]
        assert hop.attributes["dramatiq.message.delayed_hop"] is True
        assert len(process) == 1 and process[0].attributes["dramatiq.message.redelivered"] is False
        assert trace_id(process[0]) == trace_id(request)


def test_without_parking_the_node_closes_the_delay_queue_channel_and_redelivers(
    short_timeout_node: RabbitmqNode, caplog: pytest.LogCaptureFixture
) -> None:
    """The control: Dramatiq's own holding (a hold limit of 0) on the same node. Shows the test above can fail."""
    queue = f"held_{uuid.uuid4().hex[:10]}"
    deliveries = Deliveries()
    broker = _broker(short_timeout_node, consumer_timeout_ms=0, deliveries=deliveries)
    ran: list[str] = []

    @dramatiq.actor(actor_name=f"held_{queue}", queue_name=queue, broker=broker)
    def held(label: str) -> None:
        ran.append(label)

    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=2)
    worker.start()
    caplog.set_level(logging.WARNING, logger="dramatiq")
    try:
        held.send_with_options(args=("long",), delay=int(1.5 * CONSUMER_TIMEOUT_MS))
        assert wait_until(lambda: "long" in ran, timeout=30)
    finally:
        worker.stop()
        broker.close()

    assert deliveries.redelivered(), "RabbitMQ never redelivered the held message: is the node's timeout on?"
    assert any("connection error" in r.getMessage() for r in caplog.records)
