"""``TracedqBroker(queue_type="quorum")`` on a real RabbitMQ (3.10 or newer), in a virtual host of this module's own.

The vhost is created with ``rabbitmqctl`` and deleted afterwards, so other test runs and other engineers'
workers on the same server never see these queues; queue types are read back with
``rabbitmqctl list_queues name type arguments`` (no management plugin needed). Workers run in this
process, each on its own broker object. See docs/deploy.md ("Quorum queues").
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.message import Message
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from messaging.broadcast import broadcast_queue
from messaging.broker import TracedqBroker
from messaging.queue_declaration import QueueArgumentsMismatch
from observability import Tracing, install
from tests.environment.polling import wait_until
from tests.environment.rabbitmqctl import rabbitmqctl
from tests.environment.vhost import VhostProbe, own_vhost

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]


# -- the module's own vhost --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vhost(VhostProbe):
    """A virtual host on the test server: its broker URL and what ``rabbitmqctl`` says about its queues."""

    socket_timeout = 3.0

    def queues(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        """Queue name -> ``{"type", "arguments" (a dict), "durable", "auto_delete"}``.

        Only the queues whose name starts with ``prefix``: the tests of this module share the vhost. (No
        message counts: ``list_queues`` reports them from statistics that lag by seconds.)
        """
        columns = ("name", "type", "arguments", "durable", "auto_delete")
        out = rabbitmqctl("list_queues", "-q", "-p", self.vhost, *columns, "--formatter", "json")
        rows = json.loads(out or "[]")
        return {
            row["name"]: {
                **{key: row[key] for key in columns[1:]},
                "arguments": {key: value for key, _type, value in row["arguments"]},
            }
            for row in rows
            if row["name"].startswith(prefix)
        }


@pytest.fixture(scope="module")
def vhost() -> Iterator[Vhost]:
    """A fresh vhost with full permissions for the test user, deleted at the end of the module."""
    with own_vhost("tracedq_quorum") as name:
        yield Vhost(name)


@pytest.fixture
def quorum_broker(vhost: Vhost) -> Iterator[TracedqBroker]:
    """A quorum-queue broker on the vhost, publishing with confirms, closed after the test."""
    broker = TracedqBroker(url=vhost.broker_url, confirm_delivery=True, queue_type="quorum")
    yield broker
    broker.close()


@pytest.fixture
def run_worker() -> Iterator[Callable[[dramatiq.Broker], dramatiq.Worker]]:
    """Starts a one-thread Dramatiq worker on a broker; every one started is stopped at teardown."""
    started: list[dramatiq.Worker] = []

    def start(broker: dramatiq.Broker) -> dramatiq.Worker:
        worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _queue_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- tests ---------------------------------------------------------------------------------------------------


def test_the_queue_its_delay_queue_and_its_dead_letter_queue_are_quorum(
    vhost: Vhost, quorum_broker: TracedqBroker
) -> None:
    """Main, .DQ and .XQ are quorum queues with Dramatiq's arguments; RabbitMQ 3.10 takes the XQ's message TTL."""
    queue = _queue_name("work")
    quorum_broker.declare_queue(queue, ensure=True)

    dead_letter = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{queue}.XQ"}
    described = vhost.queues(queue)
    assert {name: (q["type"], q["arguments"], q["durable"]) for name, q in described.items()} == {
        queue: ("quorum", {**dead_letter, "x-queue-type": "quorum"}, True),
        f"{queue}.DQ": ("quorum", {**dead_letter, "x-queue-type": "quorum"}, True),
        f"{queue}.XQ": ("quorum", {"x-message-ttl": DEAD_MESSAGE_TTL, "x-queue-type": "quorum"}, True),
    }


def test_a_message_sent_through_the_broker_is_processed_by_a_worker(
    quorum_broker: TracedqBroker, run_worker: Callable[[dramatiq.Broker], dramatiq.Worker]
) -> None:
    """A send lands in the quorum queue and a Dramatiq worker consumes and acks it."""
    queue = _queue_name("greet")
    seen: list[str] = []

    def greet(name: str) -> None:
        seen.append(name)

    actor = dramatiq.actor(actor_name="greet_quorum", queue_name=queue, broker=quorum_broker)(greet)
    run_worker(quorum_broker)
    actor.send("Ada")
    assert wait_until(lambda: seen == ["Ada"], timeout=20, interval=0.1), seen
    assert wait_until(lambda: quorum_broker.get_queue_message_counts(queue) == (0, 0, 0), timeout=10, interval=0.1)


def test_a_failing_message_retries_through_the_quorum_dq_into_the_quorum_xq(
    vhost: Vhost,
    quorum_broker: TracedqBroker,
    run_worker: Callable[[dramatiq.Broker], dramatiq.Worker],
    span_exporter: InMemorySpanExporter,
) -> None:
    """Attempt, retry via ``<queue>.DQ``, attempt, then RabbitMQ dead-letters it into ``<queue>.XQ``."""
    queue = _queue_name("flaky")
    attempts: list[int] = []
    lock = threading.Lock()

    def always_fails() -> None:
        with lock:
            attempts.append(len(attempts) + 1)
        raise RuntimeError("always fails")

    install(quorum_broker, Tracing())
    actor = dramatiq.actor(
        actor_name="always_fails",
        queue_name=queue,
        broker=quorum_broker,
        max_retries=1,
        min_backoff=100,
        max_backoff=200,
    )(always_fails)
    run_worker(quorum_broker)
    message = actor.send()

    assert wait_until(lambda: quorum_broker.get_queue_message_counts(queue)[2] == 1, timeout=30, interval=0.1), attempts
    assert attempts == [1, 2]
    names = [span.name for span in span_exporter.get_finished_spans()]
    assert names.count(f"send {queue}.DQ") == 1, names  # the retry went through the delay queue
    outcomes = {
        str(span.attributes["dramatiq.message.outcome"])
        for span in span_exporter.get_finished_spans()
        if span.name == f"process {queue}"
    }
    assert names.count(f"process {queue}") == 2 and outcomes == {"retrying", "dead_lettered"}

    assert quorum_broker.get_queue_message_counts(queue) == (0, 0, 1)
    described = vhost.queues(queue)
    assert {name: q["type"] for name, q in described.items()} == dict.fromkeys(
        (queue, f"{queue}.DQ", f"{queue}.XQ"), "quorum"
    )
    connection = vhost.connect()
    try:
        method, _properties, body = connection.channel().basic_get(f"{queue}.XQ", auto_ack=True)
        assert method is not None
        dead = Message.decode(body)
        assert (dead.message_id, dead.actor_name, dead.options["retries"]) == (message.message_id, "always_fails", 1)
    finally:
        connection.close()


def test_a_classic_queue_cannot_be_redeclared_as_quorum(vhost: Vhost, quorum_broker: TracedqBroker) -> None:
    """RabbitMQ refuses to change a queue's type; our broker says which queue and why, and its channel still works."""
    queue = _queue_name("legacy")
    classic = RabbitmqBroker(url=vhost.broker_url)
    try:
        classic.declare_queue(queue, ensure=True)
        with pytest.raises(QueueArgumentsMismatch, match=r"inequivalent arg 'x-queue-type'.*docs/deploy\.md"):
            quorum_broker.declare_queue(queue, ensure=True)
        assert quorum_broker.channel.is_open  # the closed channel was dropped; the broker still works
    finally:
        classic.close()
    described = vhost.queues(queue)
    assert {name: q["type"] for name, q in described.items()} == dict.fromkeys(
        (queue, f"{queue}.DQ", f"{queue}.XQ"), "classic"
    )


def test_broadcast_instance_queues_stay_classic_beside_a_quorum_dead_letter_queue(
    vhost: Vhost, quorum_broker: TracedqBroker
) -> None:
    """A quorum queue cannot be auto-delete: instance queues are classic, the shared durable XQ is quorum."""
    queue = broadcast_queue(_queue_name("cache"))
    quorum_broker.declare_queue(queue, ensure=True)
    instance = quorum_broker.instance_queue_name(queue)

    described = vhost.queues(queue)
    assert {name: (q["type"], q["durable"], q["auto_delete"]) for name, q in described.items()} == {
        instance: ("classic", False, True),
        f"{instance}.DQ": ("classic", False, True),
        f"{queue}.XQ": ("quorum", True, False),
    }
