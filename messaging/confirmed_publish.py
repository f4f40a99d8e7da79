"""One confirmed, mandatory publish to a named queue over the broker's channel of the calling thread.

Used where a worker moves a message itself instead of letting RabbitMQ do it (a parked delay, a dead letter with
its reason): the copy must be in the target queue before the original is acked, so the publish is confirmed
(the broker's channels are in confirm mode with ``confirm_delivery=True``) and mandatory (a missing queue is an
error, not a silent drop).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pika
import pika.exceptions
from dramatiq.errors import ConnectionClosed

__all__ = ["publish_confirmed"]


def publish_confirmed(
    broker: Any,
    queue: str,
    body: bytes,
    *,
    priority: int | None = None,
    expiration_ms: int | None = None,
    headers: Mapping[str, Any] | None = None,
) -> None:
    """Publish ``body`` to ``queue`` through the default exchange, persistent, and wait for the confirm.

    Args:
        broker: a Dramatiq RabbitMQ broker with ``confirm_delivery=True``.

    Raises:
        ConnectionClosed: the publish failed, was returned or nacked; the thread's connection is reset.
    """
    try:
        broker.channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=2,
                priority=priority,
                expiration=None if expiration_ms is None else str(expiration_ms),
                headers=dict(headers) if headers else None,
            ),
            mandatory=True,
        )
    except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
        del broker.connection  # as Dramatiq's enqueue does: the next publish opens a fresh one
        raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]  # dramatiq.errors is untyped
