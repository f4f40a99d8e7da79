"""A settle (ack or nack) of a message from a dead channel must never settle a new message with the same tag.

Dramatiq's ConsumerThread acks and nacks through whichever consumer is *current*
(``ConsumerThread.post_process_message`` -> ``self.consumer.ack/nack``). When RabbitMQ drops the connection,
the thread builds a new consumer (a new connection and channel, whose delivery tags restart at 1), while worker
threads are still processing messages received on the old channel. RabbitMQ requeued those when the old channel
died; but when one finishes, Dramatiq sends its *old* delivery tag on the *new* channel. If the new consumer has
received a message with that tag, that message is acked (lost, should the worker stop before running it) or
nacked (dead-lettered without ever running). ``messaging.broker.Broker``'s consumers ignore such stale settles.

Every test runs in a virtual host of its own (created and deleted with ``rabbitmqctl``), so that
``rabbitmqctl close_all_connections -p <vhost>`` drops this test's connections and no one else's. In each test a
raw pika connection plays "another worker process" that takes the requeued first message, so that the new
consumer's tag 1 is the second message (as happens when several workers share a queue). Two tests drive the
real ``dramatiq.Worker`` (its ConsumerThread reconnects by itself; a broker subclass holds the reconnect until
the test lets it go, which makes the order of events deterministic); the others drive the consumer API
(``broker.consume`` -> ``next``, ``ack``/``nack``, ``close``) the way the ConsumerThread does, on a plain and on
a broadcast queue.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dramatiq
import pytest
import structlog.testing
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

import messaging.consumer
from messaging.broadcast import INSTANCE_OPTION, broadcast_queue
from messaging.broker import TracedqBroker
from tests.environment.polling import wait_until
from tests.environment.vhost import VhostProbe, own_vhost

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

WAIT = 20.0


# -- a vhost per test --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vhost(VhostProbe):
    """This test's virtual host: its URL, raw connections to it, ready counts (``queue.declare-ok``'s: exact, unlike
    the lagging statistics), and a way to drop every connection in it."""

    socket_timeout = 3.0

    def drop_connections(self) -> None:
        """RabbitMQ force-closes every connection of this vhost (what a node restart or a network cut does)."""
        self.close_all_connections("stale delivery tag test")

    def take(self, queue: str) -> tuple[Message[Any], bool]:
        """Another worker's ``basic_get`` (auto-ack): waits for a message in ``queue``; returns it, redelivered?"""
        connection = self.connect()
        try:
            channel = connection.channel()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                method, _properties, body = channel.basic_get(queue, auto_ack=True)
                if method is not None:
                    return Message.decode(body), bool(method.redelivered)
                time.sleep(0.05)
            raise AssertionError(f"no message arrived in {queue!r} within {WAIT}s")
        finally:
            connection.close()


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    """A fresh vhost with full permissions for the test user, deleted after the test."""
    with own_vhost("tracedq_stale_tags") as name:
        yield Vhost(name)


def _queue_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rabbitmq_log(monkeypatch: pytest.MonkeyPatch) -> structlog.testing.CapturingLogger:
    """What messaging.consumer logs during the test."""
    capturing = structlog.testing.CapturingLogger()
    monkeypatch.setattr(messaging.consumer, "_log", capturing)
    return capturing


def _stale_settles(log: structlog.testing.CapturingLogger) -> list[tuple[str, str, int]]:
    """(settle, message id, delivery tag) of each stale settle messaging.consumer ignored (at debug level)."""
    return [
        (call.kwargs["settle"], call.kwargs["message_id"], call.kwargs["delivery_tag"])
        for call in log.calls
        if call.method_name == "debug" and call.args == ("stale_settle_ignored",)
    ]


# -- the consumer API, driven the way Dramatiq's ConsumerThread drives it -----------------------------------


def _next_message(consumer: Consumer) -> MessageProxy:
    """``for message in consumer: if message is not None: ...``: the next delivery, skipping idle ticks."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        message = next(consumer)
        if message is not None:
            return message
    raise AssertionError(f"no delivery within {WAIT}s")


def _see_connection_drop(consumer: Consumer) -> None:
    """The ConsumerThread's view of a drop: ``next`` raises ConnectionClosed; it then closes the consumer."""

    def idle_until_it_raises() -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            next(consumer)

    with pytest.raises(ConnectionClosed):
        idle_until_it_raises()
    with contextlib.suppress(ConnectionClosed):
        consumer.close()  # ConsumerThread.close() swallows the error a dead connection gives


def _keep_until_settled(vhost: Vhost, queue: str, consumer: Consumer) -> Message[Any] | None:
    """Close ``consumer`` (as a stopping worker does) and return what RabbitMQ hands on to the next consumer.

    A raw consumer subscribes first: it keeps an auto-delete broadcast instance queue alive when ``consumer``
    goes, and receives whatever ``consumer`` held unacked. ``None``: nothing came back within a few seconds.
    """
    connection = vhost.connect()
    try:
        deliveries = connection.channel().consume(queue, inactivity_timeout=0.1)
        method, _properties, body = next(deliveries)  # subscribed once the first idle tick comes
        assert method is None, "a ready message in the queue while the worker's consumer held it"
        with contextlib.suppress(ConnectionClosed):
            consumer.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            method, _properties, body = next(deliveries)
            if method is not None:
                return Message.decode(body)
        return None
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def _enqueue(broker: TracedqBroker, queue: str, label: str) -> Message[Any]:
    return broker.enqueue(Message(queue_name=queue, actor_name="work", args=(label,), kwargs={}, options={}))


@pytest.mark.parametrize("settle", ["ack", "nack"])
@pytest.mark.parametrize("kind", ["plain", "broadcast"])
def test_a_stale_settle_through_the_new_consumer_leaves_its_own_message_alone(
    vhost: Vhost, rabbitmq_log: structlog.testing.CapturingLogger, kind: str, settle: str
) -> None:
    """m1 (tag 1 on channel A), drop, m2 (tag 1 on channel B), settle m1 through B: m2 must stay unsettled."""
    queue = _queue_name("stale") if kind == "plain" else broadcast_queue(_queue_name("stale"))
    broker = TracedqBroker(url=vhost.broker_url, confirm_delivery=True)
    try:
        broker.declare_queue(queue, ensure=True)
        physical = broker.instance_queue_name(queue) if kind == "broadcast" else queue
        m1 = _enqueue(broker, queue, "m1")
        a = broker.consume(queue, prefetch=1, timeout=100)
        first = _next_message(a)
        assert (first.message_id, first._tag) == (m1.message_id, 1)

        vhost.drop_connections()
        _see_connection_drop(a)
        if kind == "plain":
            # Another worker takes the requeued m1 (an auto-delete instance queue went away with A, and m1 in it).
            taken, redelivered = vhost.take(queue)
            assert (taken.message_id, redelivered) == (m1.message_id, True)

        b = broker.consume(queue, prefetch=1, timeout=100)  # the ConsumerThread's reconnect
        m2 = _enqueue(broker, queue, "m2")
        second = _next_message(b)
        assert (second.message_id, second._tag) == (m2.message_id, 1)  # the same tag as m1 had on A
        if kind == "broadcast":
            assert second.options[INSTANCE_OPTION] == broker.instance_id  # stamping unchanged

        # The worker thread that was running m1 finishes and settles it through the current consumer: B.
        if settle == "nack":
            first.fail()
            b.nack(first)
        else:
            b.ack(first)

        returned = _keep_until_settled(vhost, physical, b)  # the worker stops before running m2
        dead = vhost.ready_count(f"{queue}.XQ")
        assert returned is not None, f"m2 was settled by m1's stale {settle} (dead-letter queue holds {dead})"
        assert returned.message_id == m2.message_id
        assert dead == 0
        assert _stale_settles(rabbitmq_log) == [(settle, m1.message_id, 1)]
    finally:
        broker.close()


# -- the real Worker and ConsumerThread ---------------------------------------------------------------------


class _GatedBroker(TracedqBroker):
    """Our broker, whose consumer of ``gated`` waits for ``reconnect`` each time it is built again (a reconnect)."""

    def __init__(self, *, gated: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gated = gated
        self.reconnect = threading.Event()
        self.reconnecting = threading.Event()
        self.built: list[Consumer] = []

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        if queue_name == self.gated and self.built:
            self.reconnecting.set()
            assert self.reconnect.wait(WAIT * 2), "the test never let the consumer reconnect"
        consumer = super().consume(queue_name, prefetch, timeout)
        if queue_name == self.gated:
            self.built.append(consumer)
        return consumer


class _SettleHooks(dramatiq.Middleware):
    """Records the worker's settle hooks: (hook, message id)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def before_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.calls.append(("before_ack", message.message_id))

    def after_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.calls.append(("after_ack", message.message_id))

    def before_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.calls.append(("before_nack", message.message_id))

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.calls.append(("after_nack", message.message_id))


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_worker_reconnecting_mid_message_does_not_settle_the_next_message(
    vhost: Vhost, rabbitmq_log: structlog.testing.CapturingLogger, outcome: str
) -> None:
    """A real Worker: m1 runs, the connection drops, B receives m2 at tag 1, m1 finishes, the worker stops.

    ``success``: m1 is acked through B; ``failure``: m1 fails for good (``max_retries=0``) and is nacked through
    B. Either way m2, never run, must be back in the queue (and not in the dead-letter queue), and the settle
    hooks of m1 still ran (the worker emits them; only the consumer's stale ack/nack is dropped).
    """
    queue = _queue_name("stale-worker")
    broker = _GatedBroker(gated=queue, url=vhost.broker_url, confirm_delivery=True)
    hooks = _SettleHooks()
    broker.add_middleware(hooks)
    m1_running, release_m1 = threading.Event(), threading.Event()
    ran: list[str] = []

    def work(label: str) -> None:
        ran.append(label)
        if label == "m1":
            m1_running.set()
            assert release_m1.wait(WAIT * 2)
            if outcome == "failure":
                raise RuntimeError("m1 fails for good")

    actor = dramatiq.actor(actor_name="work", queue_name=queue, broker=broker, max_retries=0)(work)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    stopper = threading.Thread(target=worker.stop, name="worker-stop")
    worker.start()
    try:
        m1 = actor.send("m1")
        assert m1_running.wait(WAIT)
        a = broker.built[0]
        assert a.known_tags == {1}  # m1 is tag 1 on channel A

        vhost.drop_connections()
        assert broker.reconnecting.wait(WAIT)  # the ConsumerThread saw the drop and is rebuilding its consumer
        taken, redelivered = vhost.take(queue)  # another worker takes the requeued m1
        assert (taken.message_id, redelivered) == (m1.message_id, True)
        m2 = actor.send("m2")
        broker.reconnect.set()
        assert wait_until(
            lambda: len(broker.built) == 2 and worker.work_queue.qsize() == 1, timeout=WAIT, interval=0.05
        )
        b = broker.built[1]
        assert b.known_tags == {1}  # m2 is tag 1 on channel B, waiting for a thread

        # Stop the worker while m1 still runs: its thread settles m1 (through B) and then takes nothing more.
        stopper.start()
        assert wait_until(lambda: not any(thread.running for thread in worker.workers), timeout=WAIT, interval=0.05)
        release_m1.set()
        stopper.join(WAIT * 2)
        assert not stopper.is_alive()

        assert ran == ["m1"]
        wait_until(
            lambda: vhost.ready_count(queue) == 1, timeout=5, interval=0.05
        )  # B's unacked deliveries go back as it closes
        ready, dead = vhost.ready_count(queue), vhost.ready_count(f"{queue}.XQ")
        assert ready == 1, f"m2 is gone (dead-letter queue holds {dead}): m1's stale settle settled it"
        assert dead == 0
        left, redelivered = vhost.take(queue)
        assert (left.message_id, redelivered) == (m2.message_id, True)

        settle = "nack" if outcome == "failure" else "ack"
        assert _stale_settles(rabbitmq_log) == [(settle, m1.message_id, 1)]
        assert hooks.calls == [(f"before_{settle}", m1.message_id), (f"after_{settle}", m1.message_id)]
    finally:
        release_m1.set()
        broker.reconnect.set()
        if not stopper.is_alive() and stopper.ident is None:
            worker.stop()
        broker.close()
