"""The consumer of every queue: refuses broken envelopes, settles only the messages it delivered itself.

Every queue is consumed through :class:`SettlingConsumer` (broadcast ones through its subclass), which settles only
what it delivered itself. Dramatiq's ConsumerThread acks and nacks through whichever consumer is *current*: after
a reconnect (new connection, new channel, delivery tags from 1 again) a worker thread still running a message
from the dead channel would settle it with its old tag on the new channel, i.e. ack or dead-letter whichever new
delivery holds that tag. RabbitMQ requeued the old message when its channel closed (it comes back flagged
redelivered), so such a stale settle is dropped, with a debug log line. The ``before_ack``/``after_ack`` and
``before_nack``/``after_nack`` hooks still run around it: the ConsumerThread emits them, not the consumer, and
the attempt they describe did happen (the actor ran), so Metrics and Tracing record it as it happened. Caveat:
for a stale nack they record a ``nack`` span and a ``dead_lettered`` outcome although RabbitMQ requeued the
message; its redelivery is processed, and recorded, again.
"""

from __future__ import annotations

import time
from typing import Any, Final

import pika.exceptions
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

from messaging.dead_lettering import failure_headers, publish_dead_letter, raw_delivery
from messaging.delay_parking import may_park, park_queue_name, parking_expiration
from messaging.envelope import CheckedConsumer
from observability.dramatiq_internals import proxy_exception

__all__ = ["SettlingConsumer"]

#: Proxy attribute naming the consumer (its token) that delivered a message.
_DELIVERED_BY: Final = "_tracedq_delivered_by"

_log = structlog.get_logger(__name__)


class SettlingConsumer(CheckedConsumer):
    """The consumer of every queue: settles (acks, nacks) only messages it delivered itself.

    Each message it yields is stamped (a proxy attribute, never sent anywhere) with a token of this consumer.
    ``ack``/``nack`` of a message stamped by another consumer, one whose channel has died, is ignored: its
    delivery tag means nothing on this channel, or worse, names one of this channel's own deliveries. RabbitMQ
    requeued that message when the old channel closed and redelivers it (flagged redelivered).
    """

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self._token = object()  # not id(self): an id can be reused once this consumer is gone
        activity = getattr(broker, "consumer_activity", None)
        self._ticks: dict[str, float] | None = None if activity is None else activity.ticks
        # Whether this consumer may park (a delay queue's, with a hold limit): decided on the first delivery, once
        # the subclass has set the queue name it reports; every other consumer skips the check per message.
        self._parks: bool | None = None

    def __next__(self) -> Any:
        message = super().__next__()
        if self._ticks is not None:  # a sign of life per delivery or idle tick (messaging/consumer_activity.py)
            self._ticks[self.queue_name] = time.monotonic()
        if message is None:
            return None
        if self._parks is None:
            self._parks = may_park(self.queue_name, getattr(self.broker, "delay_hold_limit_ms", 0))
        if self._parks and self._parked(message):
            return None
        message.__dict__[_DELIVERED_BY] = self._token
        return message

    def _parked(self, message: MessageProxy) -> bool:
        """Park a delayed delivery whose eta is beyond the broker's hold limit (messaging/delay_parking.py)."""
        hold_limit_ms: int = self.broker.delay_hold_limit_ms
        expiration = parking_expiration(message._message, hold_limit_ms, current_millis())
        if expiration is None:
            return False
        try:
            self.broker.park(message._message, expiration)
        except Exception as exc:  # hold it as Dramatiq does: late for the consumer timeout beats lost
            _log.warning(
                "delayed_message_not_parked",
                queue=self.queue_name,
                message_id=message.message_id,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        tag = message._tag  # its delivery tag on this consumer's channel
        self.known_tags.discard(tag)
        try:  # the consumer thread owns this channel: no add_callback_threadsafe needed
            self.channel.basic_ack(tag)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]  # redelivered, parked again
        _log.debug(
            "delayed_message_parked",
            queue=self.queue_name,
            park_queue=park_queue_name(self.queue_name),
            message_id=message.message_id,
            eta=message.options.get("eta"),
            back_in_ms=expiration,
        )
        return True

    def ack(self, message: MessageProxy) -> None:
        if not self._is_stale(message, "ack"):
            super().ack(message)  # type: ignore[no-untyped-call]

    def nack(self, message: MessageProxy) -> None:
        if self._is_stale(message, "nack") or self._dead_lettered_with_reason(message):
            return
        super().nack(message)  # type: ignore[no-untyped-call]  # RabbitMQ dead-letters it, x-death only

    def _dead_lettered_with_reason(self, message: MessageProxy) -> bool:
        """Publish the failed message to the XQ with why (messaging/dead_lettering.py), then ack it: True if done."""
        broker = self.broker
        if not getattr(broker, "confirm_delivery", False):
            return False  # unconfirmed, the copy could be lost after the ack
        try:
            headers = failure_headers(
                broker,
                message,
                proxy_exception(message),
                queue=self.queue_name,
                capture=getattr(broker, "capture_personal_data", False),
            )
            properties, body = raw_delivery(message)
            publish_dead_letter(broker, self.queue_name, body, headers, properties)
        except Exception as exc:
            _log.warning(
                "dead_letter_reason_lost",
                queue=self.queue_name,
                message_id=message.message_id,
                error=f"{type(exc).__name__}: {exc}",
                detail="dead-lettered by RabbitMQ instead, without the reason headers",
            )
            return False
        super().ack(message)  # type: ignore[no-untyped-call]
        return True

    def _is_stale(self, message: MessageProxy, settle: str) -> bool:
        token = message.__dict__.get(_DELIVERED_BY)
        if token is None or token is self._token:  # None: not a delivery of ours; Dramatiq decides as before
            return False
        _log.debug(
            "stale_settle_ignored",
            settle=settle,
            queue=self.queue_name,
            message_id=message.message_id,
            delivery_tag=getattr(message, "_tag", None),
            reason="delivered on a channel that has since closed: RabbitMQ requeued it and will redeliver it",
        )
        return True
