"""The trace survives real AMQP hops: publish, delay queue, dead-letter queue (RabbitMQ on loopback)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import dramatiq
import pika
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import default_middleware
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from observability import Tracing, install
from tests.environment.polling import wait_until
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.spans import is_child, named, one, trace_id

pytestmark = pytest.mark.rabbitmq
tracer = trace.get_tracer("tests")


@pytest.fixture
def rabbitmq_broker(span_exporter: InMemorySpanExporter) -> Iterator[RabbitmqBroker]:
    """A RabbitMQ broker publishing with confirms, traced like production."""
    require_rabbitmq()
    broker = RabbitmqBroker(
        url=RABBITMQ_URL, confirm_delivery=True, middleware=[factory() for factory in default_middleware]
    )
    install(broker, Tracing())
    broker.emit_after("process_boot")
    yield broker
    broker.close()


@pytest.fixture
def rabbitmq_worker(rabbitmq_broker: RabbitmqBroker) -> Iterator[dramatiq.Worker]:
    worker = dramatiq.Worker(rabbitmq_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


def dead_letters(queue: str) -> list[dict]:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    bodies = []
    while True:
        method, _, body = channel.basic_get(f"{queue}.XQ", auto_ack=True)
        if method is None:
            break
        bodies.append(json.loads(body))
    connection.close()
    return bodies


def test_traceparent_survives_a_real_amqp_hop(
    rabbitmq_broker: RabbitmqBroker, queue_name: str, span_exporter: InMemorySpanExporter
) -> None:
    """request -> send -> (RabbitMQ) -> process, with RabbitMQ attributes on both sides."""
    done = threading.Event()

    @dramatiq.actor(actor_name=f"hop_{queue_name}", queue_name=queue_name, broker=rabbitmq_broker)
    def hop() -> None:
        done.set()

    worker = dramatiq.Worker(rabbitmq_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        with tracer.start_as_current_span("request"):
            hop.send()
        assert done.wait(20)
        assert wait_until(
            lambda: len(named(span_exporter.get_finished_spans(), f"process {queue_name}")) == 1,
            timeout=5.0,
            interval=0.01,
        )
    finally:
        worker.stop()

    spans = span_exporter.get_finished_spans()
    request, send, process = (one(spans, n) for n in ("request", f"send {queue_name}", f"process {queue_name}"))
    assert is_child(send, request) and is_child(process, send)
    for span in (send, process):
        assert span.attributes["messaging.system"] == "rabbitmq"
        assert span.attributes["messaging.rabbitmq.destination.routing_key"] == queue_name
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == 5672
    assert isinstance(process.attributes["messaging.rabbitmq.message.delivery_tag"], int)
    assert process.attributes["dramatiq.message.redelivered"] is False


def test_retry_through_the_real_delay_queue_stays_in_one_trace(
    rabbitmq_broker: RabbitmqBroker, queue_name: str, span_exporter: InMemorySpanExporter
) -> None:
    """A Retry goes through ``<queue>.DQ`` on RabbitMQ and comes back, every hop chained."""
    attempts: list[int] = []
    done = threading.Event()

    @dramatiq.actor(actor_name=f"retry_{queue_name}", queue_name=queue_name, broker=rabbitmq_broker)
    def retried() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise dramatiq.Retry(delay=200)
        done.set()

    worker = dramatiq.Worker(rabbitmq_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        retried.send()
        assert done.wait(30)
        assert wait_until(
            lambda: len(named(span_exporter.get_finished_spans(), f"process {queue_name}")) == 2,
            timeout=5.0,
            interval=0.01,
        )
    finally:
        worker.stop()

    spans = span_exporter.get_finished_spans()
    first, second = sorted(
        named(spans, f"process {queue_name}"), key=lambda s: s.attributes["dramatiq.message.retries"]
    )
    retry_send = one(spans, f"send {queue_name}.DQ")
    hop = next(s for s in named(spans, f"send {queue_name}") if s.attributes.get("dramatiq.message.delayed_hop"))
    assert is_child(retry_send, first) and is_child(hop, retry_send) and is_child(second, hop)
    assert retry_send.attributes["messaging.rabbitmq.destination.routing_key"] == f"{queue_name}.DQ"
    assert first.attributes["dramatiq.retry.delay_ms"] == 200
    assert len({trace_id(s) for s in spans}) == 1


def test_dead_lettered_message_lands_in_xq_with_its_trace_and_a_marked_span(
    rabbitmq_broker: RabbitmqBroker, queue_name: str, span_exporter: InMemorySpanExporter
) -> None:
    """Retries exhausted: the message is in ``<queue>.XQ`` carrying its trace, the span says why."""

    @dramatiq.actor(actor_name=f"doomed_{queue_name}", queue_name=queue_name, broker=rabbitmq_broker, max_retries=0)
    def doomed() -> None:
        raise RuntimeError("cannot")

    worker = dramatiq.Worker(rabbitmq_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    try:
        message = doomed.send()
        assert wait_until(
            lambda: len(named(span_exporter.get_finished_spans(), f"nack {queue_name}")) == 1, timeout=20, interval=0.01
        )
    finally:
        worker.stop()

    process = one(span_exporter.get_finished_spans(), f"process {queue_name}")
    assert process.attributes["dramatiq.message.dead_letter_queue"] == f"{queue_name}.XQ"
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "retries_exhausted"
    assert wait_until(lambda: _xq_depth(queue_name) == 1, timeout=10, interval=0.01)
    [dead] = dead_letters(queue_name)
    assert dead["message_id"] == message.message_id
    assert dead["options"]["trace_context"]["traceparent"].split("-")[1] == format(trace_id(process), "032x")


def test_unknown_actor_from_raw_pika_is_dead_lettered_and_marked(
    rabbitmq_broker: RabbitmqBroker, queue_name: str, span_exporter: InMemorySpanExporter
) -> None:
    """A producer in another language publishes for an actor we do not have: XQ, with a marked span."""

    @dramatiq.actor(actor_name=f"known_{queue_name}", queue_name=queue_name, broker=rabbitmq_broker)
    def known() -> None:
        pass

    rabbitmq_broker.declare_queue(queue_name, ensure=True)  # a raw publish to a missing queue is dropped
    body = {
        "queue_name": queue_name,
        "actor_name": "ghost",
        "args": [],
        "kwargs": {},
        "options": {"trace_context": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": 0,
    }
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    connection.channel().basic_publish("", queue_name, json.dumps(body).encode())
    connection.close()

    worker = dramatiq.Worker(rabbitmq_broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        assert wait_until(
            lambda: len(named(span_exporter.get_finished_spans(), f"nack {queue_name}")) == 1, timeout=20, interval=0.01
        )
    finally:
        worker.stop()
    process = one(span_exporter.get_finished_spans(), f"process {queue_name}")
    assert format(trace_id(process), "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert process.attributes["dramatiq.message.dead_letter_reason"] == "actor_not_found"
    assert wait_until(lambda: _xq_depth(queue_name) == 1, timeout=10, interval=0.01)


def _xq_depth(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    depth = connection.channel().queue_declare(f"{queue}.XQ", passive=True).method.message_count
    connection.close()
    return int(depth)
