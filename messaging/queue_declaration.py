"""How our broker declares a queue: its type (classic or quorum), per-queue arguments, and a clear error when
RabbitMQ refuses a declaration because the queue exists with other arguments.

``TracedqBroker(queue_type="quorum")`` declares every durable queue (each main queue, its ``.DQ`` and its ``.XQ``,
which must agree) with ``x-queue-type: quorum``; broadcast instance queues stay classic, since a quorum queue
cannot be auto-delete or non-durable. Classic (the default) declares exactly what Dramatiq declares, so existing
queues keep matching. An existing queue never changes type: see docs/deploy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import pika.exceptions
from dramatiq.common import q_name
from dramatiq.errors import BrokerError

from messaging.broadcast import is_broadcast

__all__ = [
    "QUEUE_TYPES",
    "QueueArgumentsMismatch",
    "QueueType",
    "checked_queue_arguments",
    "declare_queue",
    "single_active_consumer",
]

#: What ``TracedqBroker(queue_type=...)`` declares durable queues as.
QueueType = Literal["classic", "quorum"]
QUEUE_TYPES: Final = ("classic", "quorum")
# Dramatiq sets these itself (and TracedqBroker sets x-queue-type on the queue and its .DQ/.XQ together); letting
# a caller override them per queue would break retries and dead-lettering.
_RESERVED_ARGUMENTS: Final = frozenset(
    {"x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-queue-type"}
)


def single_active_consumer(*queue_names: str) -> dict[str, dict[str, Any]]:
    """``queue_arguments`` that make RabbitMQ deliver each of ``queue_names`` to one consumer at a time."""
    return {name: {"x-single-active-consumer": True} for name in queue_names}


class QueueArgumentsMismatch(BrokerError):
    """RabbitMQ refused a declaration (PRECONDITION_FAILED): the queue exists with other arguments."""


def checked_queue_arguments(queue_name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """``arguments`` for main queue ``queue_name``, refused when they cannot apply to it.

    Raises:
        ValueError: ``queue_name`` is not canonical or is a broadcast queue, or ``arguments`` override ones
            Dramatiq or ``queue_type=`` set.
    """
    if queue_name != q_name(queue_name):
        raise ValueError(f"queue arguments apply to canonical queues, not {queue_name!r}")
    if is_broadcast(queue_name):
        raise ValueError(f"{queue_name!r} is a broadcast queue: its instance queues take no extra arguments")
    reserved = _RESERVED_ARGUMENTS & set(arguments)
    if reserved:
        raise ValueError(f"Dramatiq or queue_type= set {sorted(reserved)}; they cannot be overridden per queue")
    return dict(arguments)


def declare_queue(
    channel: Any, name: str, arguments: dict[str, Any], *, queue_type: QueueType, broadcast_expires_ms: int | None
) -> Any:
    """Declare ``name`` on ``channel``: durable of ``queue_type``, or (``broadcast_expires_ms`` given) a classic
    auto-delete instance queue expiring after that long unused.

    Raises:
        QueueArgumentsMismatch: the queue exists with other arguments; the broker closed ``channel``.
    """
    try:
        if broadcast_expires_ms is not None:  # a quorum queue can be neither auto-delete nor non-durable
            arguments = {**arguments, "x-expires": broadcast_expires_ms, "x-queue-type": "classic"}
            return channel.queue_declare(queue=name, durable=False, auto_delete=True, arguments=arguments)
        if queue_type != "classic":  # classic adds nothing: queues Dramatiq declared keep matching
            arguments = {**arguments, "x-queue-type": queue_type}
        return channel.queue_declare(queue=name, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        hint = " (a queue's type never changes: see docs/deploy.md)" if "x-queue-type" in exc.reply_text else ""
        raise QueueArgumentsMismatch(  # type: ignore[no-untyped-call]  # dramatiq.errors is untyped
            f"RabbitMQ refused to declare queue {name!r} with arguments {arguments}: it exists with "
            f"different ones ({exc.reply_text}). Queue arguments cannot change on an existing queue: "
            f"delete the queue (after draining it) or use a new queue name{hint}."
        ) from exc
