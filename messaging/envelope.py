"""Refuse a decoded message whose envelope would break Dramatiq's worker loop: it goes to ``<queue>.XQ`` at once.

Dramatiq's RabbitMQ consumer dead-letters a body that is not JSON, but accepts any JSON object with the right
keys, whatever their types. A few wrong types then fail *outside* every middleware's ``try`` (issue 7, fault 6):

- ``options`` that is a string, a number or null makes the consumer thread's ``"eta" in message.options`` raise; the
  consumer restarts, RabbitMQ redelivers the same message, and the queue is stuck on it for good;
- a ``queue_name`` other than the queue the message arrived on (``consumers[message.queue_name]``), and, once the
  actor raises, ``options`` that is a list or an ``options.throws`` (a class cannot travel in JSON, so any value
  is hostile), kill the worker thread that processes it: the message stays unacked and the process has one
  thread fewer, for good;
- an ``actor_name`` that is a list or an object is not hashable and restarts the consumer like a bad ``options``;
- a ``message_timestamp`` that is not a number makes the ``Tracing`` middleware give up the message's process
  span (and ``AgeLimit`` its check), so its fate would leave no trace.

The check below runs on the consumer thread before Dramatiq looks at the message and dead-letters what fails it,
as it does an undecodable body: no process span (no hook ran), a ``message_rejected`` log line with the reason,
and the reason in the headers of the copy in the dead-letter queue (messaging/dead_lettering.py: published with
confirms, then the original acked; a plain nack, RabbitMQ's ``x-death`` only, if that publish fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import pika.exceptions
import structlog
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.common import xq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

from messaging.dead_lettering import envelope_headers, publish_dead_letter, remember_raw_delivery

__all__ = ["CheckedConsumer", "envelope_problem"]

_log = structlog.get_logger(__name__)

#: Options whose values are Python objects (classes, callables): they never arrive through JSON legitimately.
_CODE_OPTIONS: Final = ("throws", "retry_when")
_UNDECODABLE: Final = "body is not a Dramatiq message (a JSON object with its fields)"
_MAX_SHOWN: Final = 80


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def envelope_problem(message: Message[Any], queue_name: str) -> str | None:
    """Why ``message``, delivered from ``queue_name``, cannot be handed to Dramatiq's worker; ``None`` if it can.

    Args:
        message: the message as :meth:`dramatiq.Message.decode` built it from the wire.
        queue_name: the queue the consumer reads (``orders`` or ``orders.DQ``), which the message must name.
    """
    if not isinstance(message.actor_name, str):
        return f"actor_name is {type(message.actor_name).__name__}, not a string"
    if not isinstance(message.queue_name, str) or message.queue_name != queue_name:
        return f"queue_name {_shown(message.queue_name)} is not the queue it arrived on ({queue_name!r})"
    if not isinstance(message.message_id, str):
        return f"message_id is {type(message.message_id).__name__}, not a string"
    if not isinstance(message.options, dict):
        return f"options is {type(message.options).__name__}, not an object"
    timestamp = message.message_timestamp
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        return f"message_timestamp is {type(timestamp).__name__}, not a number"
    if not isinstance(message.kwargs, dict):
        return f"kwargs is {type(message.kwargs).__name__}, not an object"
    code = [key for key in _CODE_OPTIONS if key in message.options]
    if code:
        return f"options.{code[0]} cannot come from the wire"
    return None


class CheckedConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, dead-lettering with its reason (messaging/dead_lettering.py) each delivery that
    :func:`envelope_problem` refuses or that is not a Dramatiq message at all."""

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]  # untyped
        # The delivery Dramatiq is decoding, (tag, properties, body): the consumer thread sets and clears it around
        # each __next__, so an undecodable body's _nack (from inside Dramatiq's __next__) can keep the body.
        self._decoding: tuple[int, Any, bytes] | None = None
        self.iterator = self._remember_deliveries(self.iterator)

    def _remember_deliveries(self, deliveries: Iterator[Any]) -> Iterator[Any]:
        for method, properties, body in deliveries:
            self._decoding = None if method is None else (method.delivery_tag, properties, body)
            yield method, properties, body

    def __next__(self) -> Any:
        try:
            proxy = super().__next__()  # type: ignore[no-untyped-call]  # dramatiq's consumer is untyped
            delivery = self._decoding
        finally:
            self._decoding = None
        if proxy is None:
            return None
        problem = envelope_problem(proxy._message, self.queue_name)
        if problem is None:
            if delivery is not None and delivery[0] == proxy._tag:
                remember_raw_delivery(proxy, delivery[1], delivery[2])
            return proxy
        message_id = proxy._message.message_id
        _log.warning(
            "message_rejected",
            reason=problem,
            queue=self.queue_name,
            dead_letter_queue=xq_name(self.queue_name),
            message_id=message_id if isinstance(message_id, str) else None,
        )
        self.known_tags.discard(proxy._tag)
        if delivery is not None and delivery[0] == proxy._tag:
            self._refuse(proxy._tag, delivery[1], delivery[2], problem, undecodable=False)
        else:
            self._refuse(proxy._tag, None, proxy._message.encode(), problem, undecodable=False)
        return None  # as Dramatiq does after nacking an undecodable body

    def _nack(self, tag: int) -> None:
        delivery = self._decoding
        if delivery is not None and delivery[0] == tag:  # Dramatiq could not decode this body
            self._decoding = None  # Dramatiq logged "Failed to decode message"
            self._refuse(tag, delivery[1], delivery[2], _UNDECODABLE, undecodable=True)
            return
        super()._nack(tag)  # type: ignore[no-untyped-call]

    def _refuse(self, tag: int, properties: Any, body: bytes, problem: str, *, undecodable: bool) -> None:
        """On the consumer thread: to the XQ with the reason, then ack; to the XQ by a nack if that fails."""
        try:
            if getattr(self.broker, "confirm_delivery", False):
                try:
                    headers = envelope_headers(problem, queue=self.queue_name, undecodable=undecodable)
                    publish_dead_letter(self.broker, self.queue_name, body, headers, properties)
                except ConnectionClosed as exc:
                    _log.warning("dead_letter_reason_lost", queue=self.queue_name, error=str(exc))
                else:
                    self.channel.basic_ack(tag)
                    return
            super()._nack(tag)  # type: ignore[no-untyped-call]
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]  # the consumer restarts
