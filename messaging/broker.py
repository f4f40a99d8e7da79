"""Our RabbitMQ broker: Dramatiq's, plus per-queue arguments (single active consumer), broadcast queues, a
choice of queue type (classic, or replicated quorum queues) and parking of long delays.

The parts live beside it: broadcast naming and consumer (messaging/broadcast.py), queue declaration
(messaging/queue_declaration.py), the consumer every queue is read through, which refuses broken envelopes
and settles only what it delivered itself (messaging/consumer.py, messaging/envelope.py), dead letters with
their reason (messaging/dead_lettering.py) and long delays (messaging/delay_parking.py). A broadcast message's
publish is Dramatiq's enqueue retry loop with another exchange, so it stays here, beside Dramatiq's.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Final

import pika
import pika.exceptions
from dramatiq.broker import Consumer
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, MAX_ENQUEUE_ATTEMPTS, RabbitmqBroker
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from messaging.broadcast import DEFAULT_BROADCAST_QUEUE_EXPIRES_MS, INSTANCE_OPTION, BroadcastConsumer, is_broadcast
from messaging.confirmed_publish import publish_confirmed
from messaging.consumer import SettlingConsumer
from messaging.consumer_activity import ConsumerActivity
from messaging.delay_parking import park_queue_arguments, park_queue_name
from messaging.queue_declaration import (
    QUEUE_TYPES,
    QueueArgumentsMismatch,
    QueueType,
    checked_queue_arguments,
    declare_queue,
)

__all__ = ["DEFAULT_CONSUMER_TIMEOUT_MS", "TracedqBroker"]

#: RabbitMQ's default ``consumer_timeout``: a delivery unacked this long closes its channel.
DEFAULT_CONSUMER_TIMEOUT_MS: Final = 30 * 60 * 1000


class TracedqBroker(RabbitmqBroker):
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
            due later (messaging/delay_parking.py); needs ``confirm_delivery=True``.
        capture_personal_data: keep exception texts with dead letters (messaging/dead_lettering.py) even when their
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
        self.queue_arguments[queue_name] = checked_queue_arguments(queue_name, arguments)

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
        expires = self.broadcast_queue_expires_ms if broadcast else None
        try:
            return declare_queue(
                self.channel, name, arguments, queue_type=self.queue_type, broadcast_expires_ms=expires
            )
        except QueueArgumentsMismatch:
            del self.channel  # the broker closed it; the next caller opens a fresh one
            raise

    def park(self, message: Message[Any], expiration_ms: int) -> None:
        """Publish ``message`` (a delivery of ``<queue>.DQ``) unchanged to ``<queue>.DQ.park``, confirmed, to come
        back to the delay queue in ``expiration_ms`` (messaging/delay_parking.py).

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
        """Dramatiq's consumer, refusing envelopes that would break the worker loop (messaging/envelope.py) and
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
        return BroadcastConsumer(
            self, queue_name, self.instance_queue_name(queue_name), self.instance_id, prefetch, timeout
        )

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
        while True:  # Dramatiq's enqueue retry loop, with the exchange and routing key chosen above
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
