"""Long delays without holding a delivery past RabbitMQ's consumer timeout (Dramatiq issue #827).

Dramatiq keeps a delayed message (a ``.send_with_options(delay=...)``, or a retry's backoff) unacked in the
worker until its eta. RabbitMQ closes a channel whose delivery stays unacked longer than ``consumer_timeout``
(30 minutes by default) and redelivers everything in flight on it: the delayed message, and every other message
the worker was holding or running on that channel.

So a worker never holds a delayed delivery longer than the *hold limit* (half the server's consumer timeout).
A delivery from ``<queue>.DQ`` whose eta is further away than that is **parked** instead: published unchanged
(same body, so the same message id, options and trace carrier) to ``<queue>.DQ.park`` with a per-message
expiration of half the hold limit, then acked. The park queue dead-letters an expired message back to
``<queue>.DQ``, where the worker sees it again: parked again while the eta is still far, held as Dramatiq holds
it once the eta is within the hold limit. Every parked message gets the same expiration, so the park queue
expires them in order (RabbitMQ expires per-message TTLs only at the head of a queue).

Nothing is lost: the copy is published with confirms before the original is acked; if the publish fails the
delivery is held as before (the pre-#827 behaviour), and a crash between publish and ack leaves a duplicate
(the same message id: our services are idempotent under redelivery), never a loss.

Broadcast queues are not parked: their delay queues belong to one process and vanish with it, so a copy parked
in a durable queue could come back to nobody. Keep broadcast delays under the hold limit.
"""

from __future__ import annotations

from typing import Any, Final

from dramatiq.common import dq_name, q_name
from dramatiq.message import Message

__all__ = ["PARK_SUFFIX", "may_park", "park_queue_arguments", "park_queue_name", "parking_expiration"]

#: ``<queue>.DQ`` parks its far-off messages in ``<queue>.DQ.park``.
PARK_SUFFIX: Final = ".park"


def park_queue_name(queue_name: str) -> str:
    """The park queue of ``queue_name`` (canonical or delay queue): ``orders`` -> ``orders.DQ.park``."""
    return dq_name(q_name(queue_name)) + PARK_SUFFIX


def park_queue_arguments(queue_name: str) -> dict[str, Any]:
    """Dead-letter an expired parked message back to the delay queue it came from."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dq_name(q_name(queue_name))}


def may_park(queue_name: str, hold_limit_ms: int) -> bool:
    """Whether a consumer of ``queue_name`` parks far-off deliveries: a (non-broadcast) delay queue's, under a hold
    limit (``hold_limit_ms`` <= 0: the server has no consumer timeout, nothing is parked)."""
    if hold_limit_ms <= 0 or queue_name != dq_name(q_name(queue_name)):
        return False
    return not q_name(queue_name).endswith(".broadcast")  # an instance's delay queue: see the module docstring


def parking_expiration(message: Message[Any], hold_limit_ms: int, now_ms: int) -> int | None:
    """Milliseconds to park ``message``, delivered to a consumer that :func:`may_park`, or None to hold it as
    Dramatiq does: parked when its eta is more than ``hold_limit_ms`` away, for half the hold limit, so it comes
    back at least half the hold limit before its eta.
    """
    eta = message.options.get("eta")
    if not isinstance(eta, int | float) or isinstance(eta, bool) or eta - now_ms <= hold_limit_ms:
        return None
    return max(1, hold_limit_ms // 2)
