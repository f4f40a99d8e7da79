"""Broadcast queues: their names and the consumer of a process's instance queue.

A queue whose name ends in ``.broadcast`` (:func:`broadcast_queue`) fans a message out to every worker process:
a producer publishes to a durable **fanout exchange** named after the queue, and each worker process consumes
its own **instance queue** ``<queue>.<instance id>`` bound to that exchange (declared by
:class:`messaging.broker.TracedqBroker`). Retries and delay-queue hops stay on the instance that processed the
message: :class:`BroadcastConsumer` stamps each delivery with the process's instance id (message option
``broadcast_instance``), and the broker's ``enqueue`` sends a stamped message back to the instance's own queues
over the default exchange. See docs/broadcast-and-ordering.md.
"""

from __future__ import annotations

from typing import Any, Final

from dramatiq.common import q_name

from messaging.consumer import SettlingConsumer

__all__ = [
    "BROADCAST_SUFFIX",
    "DEFAULT_BROADCAST_QUEUE_EXPIRES_MS",
    "INSTANCE_OPTION",
    "BroadcastConsumer",
    "broadcast_queue",
    "is_broadcast",
]

#: Queue names ending with this are broadcast queues.
BROADCAST_SUFFIX: Final = ".broadcast"
#: Message option stamped on each broadcast delivery: the instance id of the process that received it.
INSTANCE_OPTION: Final = "broadcast_instance"
#: Instance queues nobody consumes are deleted after this long (auto-delete covers the normal case).
DEFAULT_BROADCAST_QUEUE_EXPIRES_MS: Final = 10 * 60 * 1000


def broadcast_queue(name: str) -> str:
    """The broadcast queue name for ``name``: ``broadcast_queue("catalog") == "catalog.broadcast"``."""
    return name + BROADCAST_SUFFIX


def is_broadcast(queue_name: str) -> bool:
    """True for a broadcast queue or its delay queue."""
    return q_name(queue_name).endswith(BROADCAST_SUFFIX)


class BroadcastConsumer(SettlingConsumer):
    """Consumes an instance queue, reports the logical queue, stamps each delivery with the instance id."""

    def __init__(
        self, broker: Any, queue_name: str, physical_name: str, instance_id: str, prefetch: int, timeout: int
    ) -> None:
        super().__init__(broker, physical_name, prefetch, timeout)
        self.queue_name = queue_name  # Dramatiq re-declares q_name(self.queue_name) after a 404
        self.instance_id = instance_id

    def __next__(self) -> Any:
        message = super().__next__()
        if message is not None:
            message.options[INSTANCE_OPTION] = self.instance_id
        return message
