"""Broadcast and single-active-consumer queues on a real RabbitMQ (see docs/broadcast-and-ordering.md).

The broadcast test runs two real ``dramatiq --skip-logging actors -p 1 -t 2`` workers exporting over OTLP
to an in-test receiver, and publishes through a private traced :class:`messaging.broker.Broker` (why private:
see tests/integration/test_worker_process.py). The other tests run Dramatiq workers in this process, each on
its own broker object, which is its own broadcast instance, on fresh queue names: queue arguments cannot
change on an existing queue.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pika.exceptions
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from messaging.broadcast import broadcast_queue
from messaging.broker import TracedqBroker
from messaging.queue_declaration import QueueArgumentsMismatch, single_active_consumer
from observability import Tracing, install
from otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.environment.polling import wait_until
from tests.environment.processes import PROJECT_ROOT, ServiceProcess
from tests.environment.servers import RABBITMQ_URL, require_rabbitmq
from tests.environment.vhost import DEFAULT_VHOST, VhostProbe
from tests.environment.worker import dramatiq_argv, worker_environment

pytestmark = pytest.mark.rabbitmq
#: The server's default vhost, where this module's queues live.
SERVER = VhostProbe(DEFAULT_VHOST)

QUEUE = "catalog.broadcast"
INSTANCE_QUEUE_ATTRIBUTE = "dramatiq.broadcast.instance_queue"


# -- RabbitMQ helpers --------------------------------------------------------------------------------


def _queue_exists(name: str) -> bool:
    connection = SERVER.connect()
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return False
        raise
    finally:
        with contextlib.suppress(Exception):
            connection.close()


@pytest.fixture
def rabbitmq() -> None:
    require_rabbitmq()


# -- two real worker processes ------------------------------------------------------------------------


class WorkerProcess(ServiceProcess):
    """``dramatiq --skip-logging actors -p 1 -t 2`` with its output under ``log_dir``."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(dramatiq_argv(processes=1, threads=2), env, log_dir)


@pytest.fixture
def workers(rabbitmq: None, otlp_receiver: OtlpReceiver, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Two worker processes on a freshly seeded SQLite catalogue; killed at teardown whatever happens."""
    env = worker_environment(
        broker_url=RABBITMQ_URL,
        database_url=f"sqlite:///{tmp_path / 'cat.db'}",
        otlp_endpoint=otlp_receiver.endpoint,
        service_name="tracedq-broadcast-test",
        state_dir=tmp_path,
    )
    for command in ("migrate", "seed"):
        done = subprocess.run(
            [sys.executable, "-m", "actors.db", command],
            cwd=PROJECT_ROOT,
            env={**env, "BROKER_URL": "memory://", "OTEL_TRACES_EXPORTER": "none"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    started = [WorkerProcess(env, tmp_path / f"worker-{index}") for index in range(2)]
    try:
        for worker in started:
            worker.start()
        yield started
    finally:
        for worker in started:
            worker.kill()


def _refresh(*args: Any) -> None:  # pragma: no cover - runs in the workers, never here
    raise AssertionError("the test process only sends")


@pytest.fixture
def broadcaster(rabbitmq: None, span_exporter: InMemorySpanExporter) -> Iterator[dramatiq.Actor[Any, Any]]:
    """``refresh_catalog_cache`` on a private traced broker of our class (a producer: it never consumes)."""
    broker = TracedqBroker(url=RABBITMQ_URL, confirm_delivery=True)
    install(broker, Tracing())
    try:
        yield dramatiq.actor(actor_name="refresh_catalog_cache", queue_name=QUEUE, broker=broker)(_refresh)
    finally:
        broker.close()


def _processes(receiver: OtlpReceiver, message_id: str | None = None) -> list[ReceivedSpan]:
    return [
        span
        for span in receiver.spans_named(f"process {QUEUE}")
        if message_id is None or span.attributes.get("messaging.message.id") == message_id
    ]


@pytest.mark.timeout(180)
def test_broadcast_reaches_each_worker_process_exactly_once(
    workers: list[WorkerProcess],
    broadcaster: dramatiq.Actor[Any, Any],
    otlp_receiver: OtlpReceiver,
    span_exporter: InMemorySpanExporter,
) -> None:
    # Readiness: probe until both processes have consumed a broadcast (their instance queues are bound).
    def both_bound() -> bool:
        broadcaster.send()
        instances = {span.resource.get("service.instance.id") for span in _processes(otlp_receiver)}
        return len(instances) >= 2

    assert wait_until(both_bound, timeout=60, interval=1.0), " / ".join(worker.describe() for worker in workers)
    span_exporter.clear()

    message = broadcaster.send()
    sends = [span for span in span_exporter.get_finished_spans() if span.name == f"send {QUEUE}"]
    assert len(sends) == 1, [span.name for span in span_exporter.get_finished_spans()]
    send_context = sends[0].get_span_context()
    assert sends[0].attributes["messaging.message.id"] == message.message_id
    assert "traceparent" in str(message.options)  # the W3C carrier rides in the message options

    arrived = otlp_receiver.wait_for(lambda _: len(_processes(otlp_receiver, message.message_id)) >= 2, timeout=30)
    assert arrived, " / ".join(worker.describe() for worker in workers)
    for worker in workers:
        assert worker.terminate() == 0, worker.describe()  # graceful: spans flushed, consumers cancelled

    processes = _processes(otlp_receiver, message.message_id)
    assert len(processes) == 2, processes
    assert len({span.resource["service.instance.id"] for span in processes}) == 2
    for span in processes:
        assert span.trace_id == format(send_context.trace_id, "032x")
        assert span.parent_span_id == format(send_context.span_id, "016x")
        assert span.attributes["dramatiq.message.outcome"] == "success"
    refreshes = [
        span for span in otlp_receiver.spans_named("refresh catalog cache") if span.trace_id == processes[0].trace_id
    ]
    assert sorted(span.parent_span_id for span in refreshes) == sorted(span.span_id for span in processes)
    assert all(span.attributes["catalog.products"] == 3 for span in refreshes)  # actors.db seed's DEMO_STOCK

    instance_queues = {span.attributes[INSTANCE_QUEUE_ATTRIBUTE] for span in processes}
    assert len(instance_queues) == 2
    physical = [name for queue in instance_queues for name in (queue, f"{queue}.DQ")]
    assert wait_until(lambda: not any(_queue_exists(name) for name in physical), timeout=15, interval=0.1), physical
    assert _queue_exists(f"{QUEUE}.XQ")  # the shared dead-letter queue outlives the instances


# -- in-process consumers on fresh queues -------------------------------------------------------------


class InProcessWorker:
    """A Dramatiq worker on its own broker object (so its own broadcast instance), counting what it ran."""

    def __init__(self, broker: TracedqBroker, worker: dramatiq.Worker) -> None:
        self.broker = broker
        self.worker = worker
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.worker.stop()
            self.broker.close()


@pytest.fixture
def in_process(rabbitmq: None) -> Iterator[Callable[..., InProcessWorker]]:
    started: list[InProcessWorker] = []

    def start(broker: TracedqBroker) -> InProcessWorker:
        worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
        worker.start()
        started.append(InProcessWorker(broker, worker))
        return started[-1]

    try:
        yield start
    finally:
        for running in started:
            running.stop()


@pytest.mark.timeout(120)
def test_single_active_consumer_delivers_to_one_worker_then_fails_over(
    in_process: Callable[..., InProcessWorker],
) -> None:
    queue = f"sac-{uuid.uuid4().hex[:10]}"
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def declare(name: str) -> TracedqBroker:
        broker = TracedqBroker(url=RABBITMQ_URL, confirm_delivery=True, queue_arguments=single_active_consumer(queue))

        def work(index: int) -> None:
            with lock:
                counts[name] += 1

        dramatiq.actor(actor_name="ordered_work", queue_name=queue, broker=broker)(work)
        return broker

    try:
        first = in_process(declare("first"))
        assert wait_until(lambda: _queue_exists(queue), timeout=10, interval=0.1)
        time.sleep(0.5)  # the first consumer registers before the second one: it is the active one
        second = in_process(declare("second"))
        producer = declare("producer")
        for index in range(20):
            producer.get_actor("ordered_work").send(index)
        assert wait_until(lambda: sum(counts.values()) == 20, timeout=20, interval=0.1), counts
        assert counts == {"first": 20}

        first.stop()  # its consumer goes away: RabbitMQ activates the waiting one
        for index in range(20):
            producer.get_actor("ordered_work").send(index)
        assert wait_until(lambda: sum(counts.values()) == 40, timeout=20, interval=0.1), counts
        assert counts == {"first": 20, "second": 20}
        second.stop()
        producer.close()
    finally:
        SERVER.delete(queues=(queue, f"{queue}.DQ", f"{queue}.XQ"))


def test_redeclaring_a_queue_with_other_arguments_fails_loudly(rabbitmq: None) -> None:
    queue = f"plain-{uuid.uuid4().hex[:10]}"
    plain = RabbitmqBroker(url=RABBITMQ_URL)
    ordered = TracedqBroker(url=RABBITMQ_URL, queue_arguments=single_active_consumer(queue))
    try:
        plain.declare_queue(queue, ensure=True)
        with pytest.raises(QueueArgumentsMismatch, match="PRECONDITION_FAILED"):
            ordered.declare_queue(queue, ensure=True)
        assert ordered.channel.is_open  # the closed channel was dropped; the broker still works
    finally:
        plain.close()
        ordered.close()
        SERVER.delete(queues=(queue, f"{queue}.DQ", f"{queue}.XQ"))


@pytest.mark.timeout(120)
def test_broadcast_retries_stay_on_the_instance_that_failed(in_process: Callable[..., InProcessWorker]) -> None:
    """Each instance fails its first attempt; its retry goes through its own .DQ, never to the others."""
    queue = broadcast_queue(f"bc-{uuid.uuid4().hex[:10]}")
    attempts: Counter[str] = Counter()
    lock = threading.Lock()

    def declare(name: str) -> TracedqBroker:
        broker = TracedqBroker(url=RABBITMQ_URL, confirm_delivery=True)
        install(broker, Tracing())

        def flaky() -> None:
            with lock:
                attempts[name] += 1
                first = attempts[name] == 1
            if first:
                raise RuntimeError("first attempt fails")

        dramatiq.actor(actor_name="flaky", queue_name=queue, broker=broker, min_backoff=100, max_backoff=200)(flaky)
        return broker

    try:
        workers = {name: in_process(declare(name)) for name in ("a", "b", "c")}
        producer = declare("producer")
        instance_queues = [running.broker.instance_queue_name(queue) for running in workers.values()]
        assert wait_until(lambda: all(_queue_exists(name) for name in instance_queues), timeout=10, interval=0.1)

        producer.get_actor("flaky").send()
        assert wait_until(lambda: attempts == {"a": 2, "b": 2, "c": 2}, timeout=20, interval=0.1), attempts
        time.sleep(1.0)  # a leaked retry would reach the others within its 100-200 ms backoff
        assert attempts == {"a": 2, "b": 2, "c": 2}
        for running in workers.values():
            running.stop()
        producer.close()
        assert wait_until(lambda: not any(_queue_exists(name) for name in instance_queues), timeout=10, interval=0.1)
    finally:
        SERVER.delete(queues=(f"{queue}.XQ",), exchanges=(queue,))
