"""A fast producer for the bench actors' queues: Dramatiq messages published straight over pika.

Each message carries its own W3C ``traceparent`` in ``options.trace_context`` (as our producers send them), so the
worker's ``Tracing`` extracts a parent as it does in production, and the producer's ``time.time()`` as its one
argument, which the actor records (``bench/workload/worker_actors.py``).
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pika

from bench.workload.kinds import KINDS

__all__ = ["Publisher"]

_FLUSH_EVERY = 200


class Publisher:
    """Publishes bench messages over one pika connection (one thread only, as pika requires)."""

    def __init__(self, amqp_url: str) -> None:
        parameters = pika.URLParameters(amqp_url)
        parameters.heartbeat = 0  # the bench waits minutes between calls at times; no heartbeat to miss
        self.amqp_url = amqp_url
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self._properties = pika.BasicProperties(delivery_mode=2)

    def declare(self, kind: str) -> str:
        """Declare the kind's queue (with its .DQ and .XQ) exactly as Dramatiq does; returns its name."""
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        queue = KINDS[kind][1]
        broker = RabbitmqBroker(url=self.amqp_url, middleware=[])
        try:
            broker.declare_queue(queue, ensure=True)
        finally:
            broker.close()
        return queue

    @staticmethod
    def body(kind: str, sent: float) -> bytes:
        """One Dramatiq message for ``kind``'s actor, ``args=[sent]``, with a fresh sampled traceparent."""
        actor_name, queue = KINDS[kind]
        traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
        message = {
            "queue_name": queue,
            "actor_name": actor_name,
            "args": [sent],
            "kwargs": {},
            "options": {"trace_context": {"traceparent": traceparent}},
            "message_id": str(uuid.uuid4()),
            "message_timestamp": int(sent * 1000),
        }
        return json.dumps(message, separators=(",", ":")).encode()

    def fill(self, kind: str, n: int) -> float:
        """Publish ``n`` messages as fast as possible; returns the seconds it took.

        ``BlockingChannel.basic_publish`` flushes and polls the socket per message (about 2,300 msg/s on the
        2-core VM); queuing the frames on the underlying channel and flushing every 200 reaches about 9,000.
        """
        queue = KINDS[kind][1]
        impl = self.channel._impl  # pika's asynchronous channel under the blocking one
        started = time.perf_counter()
        for i in range(n):
            impl.basic_publish("", queue, self.body(kind, time.time()), self._properties)
            if i % _FLUSH_EVERY == 0:
                self.connection.process_data_events(0)
        self.connection.process_data_events(0)
        return time.perf_counter() - started

    def send(self, kind: str, sent: float) -> None:
        """Publish one message now (flushed before returning)."""
        self.channel.basic_publish("", KINDS[kind][1], self.body(kind, sent), self._properties)

    def ready(self, kind: str) -> int:
        """Messages ready in the kind's queue (not counting those a consumer holds unacked)."""
        return int(self.channel.queue_declare(KINDS[kind][1], passive=True).method.message_count)

    def wait_ready(self, kind: str, n: int, timeout: float = 60.0) -> int:
        """Wait until RabbitMQ has taken all ``n`` published messages in (no consumer running)."""
        deadline = time.monotonic() + timeout
        while (count := self.ready(kind)) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return count

    def purge(self, kind: str) -> None:
        self.channel.queue_purge(KINDS[kind][1])

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
