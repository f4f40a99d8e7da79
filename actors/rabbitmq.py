"""Our RabbitMQ broker: Dramatiq's, plus per-queue arguments (single active consumer), broadcast queues and
a choice of queue type (classic, or replicated quorum queues).

Broadcast queues (names ending in ``.broadcast``, see :func:`broadcast_queue`) fan a message out to every
worker process: a producer publishes to a durable **fanout exchange** named after the queue, and each
worker process consumes its own **instance queue** ``<queue>.<instance id>`` bound to that exchange,
with its own delay queue ``<queue>.<instance id>.DQ``. Instance queues are non-durable and auto-delete
(with ``x-expires`` as a safety net for one that was declared but never consumed), so they vanish with
the process. The dead-letter queue ``<queue>.XQ`` is shared and durable, as for any Dramatiq queue.

Retries and delay-queue hops stay on the instance that processed the message: the consumer stamps each
delivery with this process's instance id (message option ``broadcast_instance``), and ``enqueue`` sends a
stamped message back to the instance's own queues over the default exchange. Anything else, a fresh
``.send()`` from any process, goes to the fanout exchange. See docs/broadcast-and-ordering.md.

``Broker(queue_type="quorum")`` declares every durable queue (each main queue, its ``.DQ`` and its ``.XQ``,
which must agree) with ``x-queue-type: quorum``; broadcast instance queues stay classic, since a quorum queue
cannot be auto-delete or non-durable. Classic (the default) declares exactly what Dramatiq declares, so
existing queues keep matching. An existing queue never changes type: see docs/deploy.md.

Every queue is consumed through :class:`actors.consumer.SettlingConsumer` (broadcast ones through a
subclass): it refuses broken envelopes (actors/envelope.py) and settles only what it delivered itself.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Final, Literal

import pika
import pika.exceptions
from dramatiq.broker import Consumer
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, MAX_ENQUEUE_ATTEMPTS, RabbitmqBroker
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from dramatiq.errors import BrokerError, ConnectionClosed
from dramatiq.message import Message

from actors.confirmed_publish import publish_confirmed
from actors.consumer import SettlingConsumer
from actors.consumer_activity import ConsumerActivity
from actors.delay_parking import park_queue_arguments, park_queue_name

__all__ = [
    "BROADCAST_SUFFIX",
    "DEFAULT_CONSUMER_TIMEOUT_MS",
    "INSTANCE_OPTION",
    "QUEUE_TYPES",
    "Broker",
    "QueueArgumentsMismatch",
    "QueueType",
    "broadcast_queue",
    "is_broadcast",
    "single_active_consumer",
]

#: Queue names ending with this are broadcast queues.
BROADCAST_SUFFIX: Final = ".broadcast"
#: Message option stamped on each broadcast delivery: the instance id of the process that received it.
INSTANCE_OPTION: Final = "broadcast_instance"
#: Instance queues nobody consumes are deleted after this long (auto-delete covers the normal case).
DEFAULT_BROADCAST_QUEUE_EXPIRES_MS: Final = 10 * 60 * 1000
#: RabbitMQ's default ``consumer_timeout``: a delivery unacked this long closes its channel.
DEFAULT_CONSUMER_TIMEOUT_MS: Final = 30 * 60 * 1000
#: What ``Broker(queue_type=...)`` declares durable queues as.
QueueType = Literal["classic", "quorum"]
QUEUE_TYPES: Final = ("classic", "quorum")
# Dramatiq sets these itself (and Broker sets x-queue-type on the queue and its .DQ/.XQ together); letting a
# caller override them per queue would break retries and dead-lettering.
_RESERVED_ARGUMENTS: Final = frozenset(
    {"x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-queue-type"}
)


def broadcast_queue(name: str) -> str:
    """The broadcast queue name for ``name``: ``broadcast_queue("catalog") == "catalog.broadcast"``."""
    return name + BROADCAST_SUFFIX


def is_broadcast(queue_name: str) -> bool:
    """True for a broadcast queue or its delay queue."""
    return q_name(queue_name).endswith(BROADCAST_SUFFIX)


def single_active_consumer(*queue_names: str) -> dict[str, dict[str, Any]]:
    """``queue_arguments`` that make RabbitMQ deliver each of ``queue_names`` to one consumer at a time."""
    return {name: {"x-single-active-consumer": True} for name in queue_names}


class QueueArgumentsMismatch(BrokerError):
    """RabbitMQ refused a declaration (PRECONDITION_FAILED): the queue exists with other arguments."""


class Broker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker with per-queue arguments and broadcast queues.

    Args:
        queue_arguments: queue name -> extra ``queue_declare`` arguments for that (main) queue, merged
            with Dramatiq's dead-letter arguments, e.g. :func:`single_active_consumer`. They do not apply
            to the delay or dead-letter queues. A queue that already exists with different arguments
            cannot be re-declared: see :class:`QueueArgumentsMismatch`.
        queue_type: ``classic`` (Dramatiq's queues, the default) or ``quorum``: every main queue, ``.DQ``
            and ``.XQ`` is declared with ``x-queue-type: quorum``; broadcast instance queues stay classic.
        broadcast_queue_expires_ms: ``x-expires`` of instance queues.
        consumer_timeout_ms: the server's ``consumer_timeout`` (RabbitMQ's default, 30 minutes, unless told;
            0 when the server has none). Workers hold a delayed message for at most half of it and park one
            due later (actors/delay_parking.py); needs ``confirm_delivery=True``.
        capture_personal_data: keep exception texts with dead letters (actors/dead_lettering.py) even when their
            class does not declare them free of personal data (``TRACE_CAPTURE_ARGS``).
        **kwargs: everything :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker` takes.

    Raises:
        ValueError: an unknown ``queue_type``, or ``quorum`` with ``max_priority`` (quorum queues refuse
            ``x-max-priority``).
    """

    def __init__(
        self,
        *,
        queue_arguments: Mapping[str, Mapping[str, Any]] | None = None,
        queue_type: QueueType = "classic",
        broadcast_queue_expires_ms: int = DEFAULT_BROADCAST_QUEUE_EXPIRES_MS,
        consumer_timeout_ms: int = DEFAULT_CONSUMER_TIMEOUT_MS,
        capture_personal_data: bool = False,
        **kwargs: Any,
    ) -> None:
        if queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be classic or quorum, not {queue_type!r}")
        super().__init__(**kwargs)
        if queue_type == "quorum" and self.max_priority:
            # RabbitMQ 3.x answers PRECONDITION_FAILED "invalid arg 'x-max-priority' ... rabbit_quorum_queue".
            raise ValueError(
                "max_priority needs classic queues: quorum queues do not take x-max-priority "
                "(RabbitMQ 4.x quorum queues have two built-in priority levels instead)"
            )
        self.queue_type: QueueType = queue_type
        self.queue_arguments: dict[str, dict[str, Any]] = {}
        for name, arguments in (queue_arguments or {}).items():
            self.set_queue_arguments(name, arguments)
        self.broadcast_queue_expires_ms = broadcast_queue_expires_ms
        # Parking publishes a copy before acking the original: only safe when publishes are confirmed.
        self.delay_hold_limit_ms = consumer_timeout_ms // 2 if self.confirm_delivery else 0
        self._park_queues_declared: set[str] = set()
        self.capture_personal_data = capture_personal_data
        self._instance: tuple[int, str] | None = None
        self._instance_lock = threading.Lock()
        self._exchanges_declared: set[str] = set()
        # Each consume attempt, delivery and idle tick, and each refused declaration, for the heartbeat.
        self.consumer_activity = ConsumerActivity()

    def set_queue_arguments(self, queue_name: str, arguments: Mapping[str, Any]) -> None:
        """Extra arguments for ``queue_name``; call before the queue is first declared on the server."""
        if queue_name != q_name(queue_name):
            raise ValueError(f"queue arguments apply to canonical queues, not {queue_name!r}")
        if is_broadcast(queue_name):
            raise ValueError(f"{queue_name!r} is a broadcast queue: its instance queues take no extra arguments")
        reserved = _RESERVED_ARGUMENTS & set(arguments)
        if reserved:
            raise ValueError(f"Dramatiq or queue_type= set {sorted(reserved)}; they cannot be overridden per queue")
        self.queue_arguments[queue_name] = dict(arguments)

    # -- broadcast naming -----------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """This process's broadcast instance id; a forked child gets its own."""
        pid = os.getpid()
        instance = self._instance
        if instance is None or instance[0] != pid:
            with self._instance_lock:
                instance = self._instance
                if instance is None or instance[0] != pid:
                    instance = (pid, f"{socket.gethostname()}.{pid}.{uuid.uuid4().hex[:8]}")
                    self._instance = instance
        return instance[1]

    def instance_queue_name(self, queue_name: str) -> str:
        """The physical queue this process consumes for broadcast ``queue_name`` (or its ``.DQ``)."""
        canonical = q_name(queue_name)
        physical = f"{canonical}.{self.instance_id}"
        return physical if queue_name == canonical else dq_name(physical)

    # -- declaration ----------------------------------------------------------------------------------

    def _declare_queue(self, queue_name: str) -> Any:
        arguments: dict[str, Any] = self._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if is_broadcast(queue_name):
            self._declare_exchange(queue_name)
            physical = self.instance_queue_name(queue_name)
            result = self._queue_declare(physical, arguments, broadcast=True)
            self.channel.queue_bind(queue=physical, exchange=queue_name)
            return result
        return self._queue_declare(queue_name, {**self.queue_arguments.get(queue_name, {}), **arguments})

    def _declare_dq_queue(self, queue_name: str) -> Any:
        arguments: dict[str, Any] = self._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        if is_broadcast(queue_name):
            return self._queue_declare(dq_name(self.instance_queue_name(queue_name)), arguments, broadcast=True)
        return self._queue_declare(dq_name(queue_name), arguments)

    def _declare_xq_queue(self, queue_name: str) -> Any:
        # Dramatiq's XQ (a static x-message-ttl: dead messages expire head first; quorum queues take it from
        # RabbitMQ 3.10), declared through _queue_declare for the queue type and QueueArgumentsMismatch.
        return self._queue_declare(xq_name(queue_name), {"x-message-ttl": DEAD_MESSAGE_TTL})

    def _queue_declare(self, name: str, arguments: dict[str, Any], *, broadcast: bool = False) -> Any:
        try:
            if broadcast:  # a quorum queue can be neither auto-delete nor non-durable: always classic
                arguments = {**arguments, "x-expires": self.broadcast_queue_expires_ms, "x-queue-type": "classic"}
                return self.channel.queue_declare(queue=name, durable=False, auto_delete=True, arguments=arguments)
            if self.queue_type != "classic":  # classic adds nothing: queues Dramatiq declared keep matching
                arguments = {**arguments, "x-queue-type": self.queue_type}
            return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:
                raise
            del self.channel  # the broker closed it; the next caller opens a fresh one
            hint = " (a queue's type never changes: see docs/deploy.md)" if "x-queue-type" in exc.reply_text else ""
            raise QueueArgumentsMismatch(  # type: ignore[no-untyped-call]  # dramatiq.errors is untyped
                f"RabbitMQ refused to declare queue {name!r} with arguments {arguments}: it exists with "
                f"different ones ({exc.reply_text}). Queue arguments cannot change on an existing queue: "
                f"delete the queue (after draining it) or use a new queue name{hint}."
            ) from exc

    def park(self, message: Message[Any], expiration_ms: int) -> None:
        """Publish ``message`` (a delivery of ``<queue>.DQ``) unchanged to ``<queue>.DQ.park``, confirmed, to come
        back to the delay queue in ``expiration_ms`` (actors/delay_parking.py).

        Raises:
            ConnectionClosed: the publish failed or was not confirmed (the caller keeps holding the message).
        """
        name = park_queue_name(message.queue_name)
        if name not in self._park_queues_declared:
            try:
                self._queue_declare(name, park_queue_arguments(message.queue_name))
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
                del self.connection
                raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
            self._park_queues_declared.add(name)
        try:
            publish_confirmed(
                self,
                name,
                message.encode(),
                priority=message.options.get("broker_priority"),
                expiration_ms=expiration_ms,
            )
        except ConnectionClosed:
            self._park_queues_declared.discard(name)
            raise

    def _declare_exchange(self, exchange: str) -> None:
        if exchange not in self._exchanges_declared:
            self.channel.exchange_declare(exchange=exchange, exchange_type="fanout", durable=True)
            self._exchanges_declared.add(exchange)

    # -- consuming ------------------------------------------------------------------------------------

    @property
    def consumer_class(self) -> type[SettlingConsumer]:
        """Dramatiq's consumer, refusing envelopes that would break the worker loop (actors/envelope.py) and
        ignoring settles of messages it did not deliver (:class:`SettlingConsumer`)."""
        return SettlingConsumer

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """Dramatiq's consumer; for a broadcast queue, one on this process's instance queue.

        Dramatiq's consumer thread calls this again every few seconds while it fails: each attempt is a sign of
        life, and a refused declaration is kept until one succeeds (``consumer_activity``, docs/health.md).
        """
        canonical = q_name(queue_name)
        self.consumer_activity.tick(queue_name)
        try:
            consumer = self._consume(queue_name, canonical, prefetch, timeout)
        except QueueArgumentsMismatch as exc:
            self.consumer_activity.declaration_failed(canonical, str(exc))
            raise
        self.consumer_activity.declaration_succeeded(canonical)
        return consumer

    def _consume(self, queue_name: str, canonical: str, prefetch: int, timeout: int) -> Consumer:
        if not is_broadcast(canonical):
            return super().consume(queue_name, prefetch, timeout)
        self.declare_queue(queue_name)
        # Always re-declare: an auto-delete instance queue went away with this process's previous consumer.
        self.queues_pending.add(canonical)
        self._ensure_queue(canonical)  # type: ignore[no-untyped-call]
        return _BroadcastConsumer(self, queue_name, self.instance_queue_name(queue_name), prefetch, timeout)

    # -- publishing -----------------------------------------------------------------------------------

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Dramatiq's enqueue; a broadcast message goes to the fanout exchange unless this process received it.

        A message this process received (a retry, a delay-queue hop) goes back to its own instance queues.
        A fresh broadcast with ``delay`` reaches every instance at once and each holds it until its eta.
        """
        canonical = q_name(message.queue_name)
        if not is_broadcast(canonical):
            return super().enqueue(message, delay=delay)
        local = message.options.get(INSTANCE_OPTION) == self.instance_id
        if delay is not None:
            message = message.copy(queue_name=dq_name(canonical), options={"eta": current_millis() + delay})
        if local:
            exchange, routing_key, mandatory = "", self.instance_queue_name(message.queue_name), self.confirm_delivery
        else:
            # Not mandatory: a broadcast while no worker runs reaches nobody, and that is not an error.
            exchange, routing_key, mandatory = canonical, "", False
        attempts = 0
        while True:
            try:
                if local:
                    self.declare_queue(canonical, ensure=True)
                else:
                    self.declare_queue(canonical)
                    self._declare_exchange(canonical)
                self.logger.debug(
                    "Enqueueing broadcast message %r via %r.", message.message_id, exchange or routing_key
                )
                self.emit_before("enqueue", message, delay)
                self.channel.basic_publish(
                    exchange=exchange,
                    routing_key=routing_key,
                    body=message.encode(),
                    properties=pika.BasicProperties(delivery_mode=2, priority=message.options.get("broker_priority")),
                    mandatory=mandatory,
                )
                self.emit_after("enqueue", message, delay)
                return message
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
                del self.connection
                self._exchanges_declared.discard(canonical)
                if isinstance(exc, pika.exceptions.UnroutableError):
                    self.queues_pending.add(canonical)  # our instance queue is gone: re-declare it
                attempts += 1
                if attempts >= MAX_ENQUEUE_ATTEMPTS:
                    raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
                self.logger.debug("Retrying broadcast enqueue. [%d/%d]", attempts, MAX_ENQUEUE_ATTEMPTS)


class _BroadcastConsumer(SettlingConsumer):
    """Consumes an instance queue, reports the logical queue, stamps each delivery with the instance id."""

    def __init__(self, broker: Broker, queue_name: str, physical_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, physical_name, prefetch, timeout)
        self.queue_name = queue_name  # Dramatiq re-declares q_name(self.queue_name) after a 404
        self.instance_id = broker.instance_id

    def __next__(self) -> Any:
        message = super().__next__()
        if message is not None:
            message.options[INSTANCE_OPTION] = self.instance_id
        return message
