"""Reading and purging ``<queue>.XQ`` over one AMQP connection that leaves what it reads in place.

Reading never removes anything: messages are fetched with ``basic_get`` and manual ack, and every one we
did not deliberately settle is nacked back (``requeue=True``) before the connection closes. If the process
dies first, RabbitMQ returns the unacked messages to the XQ by itself when the connection drops.
"""

from __future__ import annotations

import pika
import pika.exceptions
from dramatiq.common import q_name, xq_name

from operations.dead_letter import DeadLetter

__all__ = ["DeadLetterQueue", "QueueNotFound", "base_queue", "depth", "find_prefix", "purge", "read"]


class QueueNotFound(Exception):
    """The dead-letter queue does not exist on the broker."""


def base_queue(queue: str) -> str:
    """``orders``, ``orders.DQ`` and ``orders.XQ`` all name the queue ``orders``."""
    return queue[: -len(".XQ")] if queue.endswith(".XQ") else q_name(queue)


class DeadLetterQueue:
    """A connection to ``<queue>.XQ`` that holds fetched messages unacked until :meth:`close`.

    Use as a context manager: on exit every still-unsettled message goes back to the XQ.
    """

    def __init__(self, broker_url: str, queue: str) -> None:
        self.queue = base_queue(queue)
        self.xq = xq_name(self.queue)
        self.connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        self.channel = self.connection.channel()
        self._unsettled: dict[int, DeadLetter] = {}
        try:
            self.depth = self.channel.queue_declare(self.xq, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker as exc:
            self.connection.close()
            raise QueueNotFound(f"queue {self.xq!r} does not exist") from exc

    def __enter__(self) -> DeadLetterQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch(self, limit: int | None = None) -> list[DeadLetter]:
        """Fetch up to ``limit`` messages (all, when ``None``) without removing them."""
        letters: list[DeadLetter] = []
        while limit is None or len(letters) < limit:
            method, properties, body = self.channel.basic_get(self.xq, auto_ack=False)
            if method is None:
                break
            letter = DeadLetter.from_delivery(method.delivery_tag, properties, body)
            self._unsettled[letter.delivery_tag] = letter
            letters.append(letter)
        return letters

    def ack(self, letter: DeadLetter) -> None:
        """Remove ``letter`` from the XQ for good."""
        self.channel.basic_ack(letter.delivery_tag)
        self._unsettled.pop(letter.delivery_tag, None)

    def release(self, letter: DeadLetter) -> None:
        """Put ``letter`` back in the XQ."""
        self.channel.basic_nack(letter.delivery_tag, requeue=True)
        self._unsettled.pop(letter.delivery_tag, None)

    def close(self) -> None:
        """Nack every unsettled message back, then close. A dead channel returns them by itself."""
        try:
            if self.channel.is_open:
                for letter in list(self._unsettled.values()):
                    self.release(letter)
        finally:
            self._unsettled.clear()
            if self.connection.is_open:
                self.connection.close()


def read(broker_url: str, queue: str, limit: int | None) -> list[DeadLetter]:
    """Up to ``limit`` messages of ``<queue>.XQ``, left in place."""
    with DeadLetterQueue(broker_url, queue) as dlq:
        return dlq.fetch(limit)


def find_prefix(broker_url: str, queue: str, prefix: str, limit: int | None) -> list[DeadLetter]:
    """The dead letters whose id starts with ``prefix`` among the first ``limit``, left in place.

    An id equal to ``prefix`` is the only match, even if longer ids start with it.
    """
    with DeadLetterQueue(broker_url, queue) as dlq:
        matches = [letter for letter in dlq.fetch(limit) if (letter.message_id or "").startswith(prefix)]
    exact = [letter for letter in matches if letter.message_id == prefix]
    return exact or matches


def depth(broker_url: str, queue: str) -> int:
    """How many messages ``<queue>.XQ`` holds now."""
    with DeadLetterQueue(broker_url, queue) as dlq:
        return int(dlq.depth)


def purge(broker_url: str, queue: str) -> int:
    """Delete every message in ``<queue>.XQ``; returns how many there were."""
    with DeadLetterQueue(broker_url, queue) as dlq:
        return int(dlq.channel.queue_purge(dlq.xq).method.message_count)
