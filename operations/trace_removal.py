"""Removing exactly the messages of some traces from queues, putting every other message back.

``tracedq demo --broker amqp://...`` cleans up after itself with it: the messages its flows left in RabbitMQ
go, by trace id, and nothing else is touched.
"""

from __future__ import annotations

from collections.abc import Iterable

import pika
import pika.exceptions

from operations.dead_letter import DeadLetter

__all__ = ["remove_messages"]


def remove_messages(broker_url: str, queues: Iterable[str], trace_ids: set[str]) -> tuple[int, list[str]]:
    """Delete from each queue exactly the messages of ``trace_ids``; put every other one back.

    A queue that does not exist is skipped, and so is one another process consumes (a worker of the user's:
    fetching would take messages from under it, and it will process the demo's leftovers anyway).

    Returns:
        How many messages were deleted, and the queues left alone because something consumes them.
    """
    removed, consumed = 0, []
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        for queue in queues:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                continue  # no such queue (the channel is closed with it)
            if declared.method.consumer_count:
                consumed.append(queue)
                channel.close()
                continue
            held = []
            while True:  # every one held first: a message put back would be fetched again
                method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                held.append(DeadLetter.from_delivery(method.delivery_tag, properties, body))
            for message in held:
                if message.trace_id in trace_ids:
                    channel.basic_ack(message.delivery_tag)
                    removed += 1
                else:
                    channel.basic_nack(message.delivery_tag, requeue=True)
            channel.close()
    finally:
        connection.close()
    return removed, consumed
