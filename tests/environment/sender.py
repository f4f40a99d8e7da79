"""A producer of the test process: publishes to an actor by name, traced, through the broker class the workers use."""

from __future__ import annotations

from typing import Any, Self

import dramatiq

from observability import Tracing, install

__all__ = ["FlowSender"]


class FlowSender:
    """Publishes to an actor by name through a traced broker of this process, as a producer service would.

    ``dramatiq.Message(queue_name=..., actor_name=...)`` handed to ``broker.enqueue`` needs no actor
    declared here: the worker looks the actor up by name. ``Tracing`` wraps ``enqueue`` when a queue is
    declared, so every queue is declared (on the server too) before the first publish, and each publish
    gets its ``send <queue>`` PRODUCER span here, in the session's in-memory exporter.

    The broker is ``messaging.broker.TracedqBroker``, the class the workers use, so the queues it declares get the
    same arguments as theirs; it publishes with confirms (``send`` returns once RabbitMQ has the message).
    """

    def __init__(self, broker_url: str) -> None:
        from messaging.broker import TracedqBroker

        self.broker = TracedqBroker(url=broker_url, confirm_delivery=True)
        install(self.broker, Tracing())

    def declare(self, queue: str) -> None:
        """Declare ``queue`` (with its delay and dead-letter queues) on the server."""
        self.broker.declare_queue(queue, ensure=True)

    def send(self, queue: str, actor_name: str, *args: Any) -> dramatiq.Message[Any]:
        self.declare(queue)
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue, actor_name=actor_name, args=args, kwargs={}, options={}
        )
        return self.broker.enqueue(message)

    def close(self) -> None:
        self.broker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
