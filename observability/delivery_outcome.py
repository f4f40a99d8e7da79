"""How a delivery ended, decided once for spans and metrics alike (Dramatiq's own rules), and how long it waited.

Whether an exception is one the actor ``throws``, why a message was dead-lettered, and its queue wait (from
enqueue, or from a delayed message's eta): ``process_spans.py`` writes them on the process span and
``metrics.py`` records them, so the two always agree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dramatiq.broker import Broker, MessageProxy
from dramatiq.errors import ActorNotFound

from observability.propagation import ready_at

__all__ = ["dead_letter_reason", "is_thrown", "queue_wait_ms"]


def is_thrown(broker: Broker, message: MessageProxy, exception: BaseException) -> bool:
    """Whether ``exception`` is in the message's or actor's ``throws``, as ``Retries`` decides."""
    throws = message.options.get("throws")
    if not throws:
        actor = broker.actors.get(message.actor_name)
        throws = actor.options.get("throws") if actor is not None else None
    if not throws:
        return False
    try:
        return isinstance(exception, throws)
    except TypeError:  # a message option that is not a class (from a foreign producer)
        return False


def dead_letter_reason(exception: BaseException | None, *, skipped: bool, thrown: bool) -> str:
    """Why a failed message went to the dead-letter queue, in one low-cardinality word."""
    if isinstance(exception, ActorNotFound):
        return "actor_not_found"
    if skipped:
        return "skipped"
    if thrown:
        return "throws"
    return "retries_exhausted" if exception is not None else "failed"


def queue_wait_ms(message_timestamp: int, options: Mapping[str, Any]) -> int:
    """From enqueue, or from the eta of a delayed or retried message, to now, in milliseconds."""
    start = message_timestamp
    for candidate in (ready_at(options), options.get("eta")):
        if isinstance(candidate, int) and candidate > start:
            start = candidate
    return max(0, int(time.time() * 1000) - start)
