"""Dead letters that say why: the worker puts a failed message in ``<queue>.XQ`` itself, with its reason in headers.

RabbitMQ's own dead-lettering (a ``basic.nack``) copies the message unchanged and adds ``x-death`` with reason
``rejected``: the XQ then cannot tell a payload that failed validation from an exhausted retry budget, and
Dramatiq stores a traceback only when it re-enqueues for a retry. So whatever we send to the XQ (retries
exhausted, an exception in ``throws``, an unknown actor, an expired message, a refused envelope, an undecodable
body) is published there by the worker with these AMQP headers, then the original is acked:

==============================  ================================================================================
``tracedq-dead-letter-reason``  ``retries_exhausted``, ``throws``, ``actor_not_found``, ``skipped`` (a middleware
                                failed and skipped it, e.g. ``AgeLimit``), ``failed``, ``invalid_envelope`` or
                                ``undecodable``
``tracedq-exception-type``      the exception's qualified class name (absent for the last two)
``tracedq-exception-message``   its text, only when personal data is captured (``TRACE_CAPTURE_ARGS``) or the
                                class declares ``safe_to_log = True`` (observability/personal_data.py); for the
                                last two reasons, what is wrong with the envelope or the body
``tracedq-attempts``            how many times its actor ran it (0: never)
``tracedq-dead-lettered-at``    when, ISO 8601 UTC
``tracedq-queue``               the queue it was consumed from (``orders`` or ``orders.DQ``)
==============================  ================================================================================

The body is the one RabbitMQ delivered, byte for byte, and the delivery's own headers are kept beside ours (as
RabbitMQ's dead-lettering keeps them). Never a loss: the publish is confirmed before the ack, so a crash between
the two leaves a duplicate in the XQ (the same message id) and the original redelivered. If the publish fails, the
worker falls back to ``basic.nack``: RabbitMQ dead-letters the message without the headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from dramatiq.common import q_name, xq_name
from dramatiq.errors import ActorNotFound, DecodeError
from dramatiq.message import Message
from dramatiq.middleware import SkipMessage

from messaging.confirmed_publish import publish_confirmed
from observability.delivery_outcome import dead_letter_reason, is_thrown
from observability.personal_data import shareable_text
from observability.process_spans import qualified_name

__all__ = [
    "DeadLetterFacts",
    "Header",
    "envelope_headers",
    "failure_headers",
    "publish_dead_letter",
    "raw_delivery",
    "remember_raw_delivery",
]


class Header(StrEnum):
    """The ``tracedq-*`` headers of a dead letter; each value is the header's name on the wire."""

    REASON = "tracedq-dead-letter-reason"
    EXCEPTION_TYPE = "tracedq-exception-type"
    EXCEPTION_MESSAGE = "tracedq-exception-message"
    ATTEMPTS = "tracedq-attempts"
    DEAD_LETTERED_AT = "tracedq-dead-lettered-at"
    QUEUE = "tracedq-queue"


_MAX_MESSAGE: Final = 1000  # a header, not a log file: the first thousand characters say what went wrong
#: Proxy attribute (never sent anywhere) holding the delivery's (properties, body) until it is settled.
_RAW: Final = "_tracedq_raw_delivery"


def remember_raw_delivery(proxy: Any, properties: Any, body: bytes) -> None:
    """Keep what RabbitMQ delivered with the message (on every delivery: a tuple, nothing parsed), so a dead
    letter is the same bytes and headers."""
    proxy.__dict__[_RAW] = (properties, body)


def raw_delivery(proxy: Any) -> tuple[Any, bytes]:
    """(properties, body) as delivered; a re-encoding of the message if they were not kept."""
    found = proxy.__dict__.get(_RAW)
    return found if found is not None else (None, proxy._message.encode())


def _delivered_retries(proxy: Any) -> int:
    """The retry count the message arrived with. ``Retries`` increments the message's own before the worker
    settles it, so on the failure path it is read again from the delivered body."""
    found = proxy.__dict__.get(_RAW)
    if found is None:
        return _retries(proxy.options)
    try:
        return _retries(Message.decode(found[1]).options)  # with Dramatiq's encoder, as the consumer decoded it
    except DecodeError:
        return _retries(proxy.options)


def _retries(options: Any) -> int:
    retries = options.get("retries", 0) if isinstance(options, dict) else 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        return 0  # from the wire: a foreign producer may write anything there
    return retries


@dataclass(frozen=True)
class DeadLetterFacts:
    """What a dead letter's headers say (see the module docstring); the exception's two only when they apply."""

    reason: str
    queue: str
    attempts: int
    exception_type: str | None = None
    exception_message: str | None = None

    def headers(self) -> dict[str, Any]:
        """The ``tracedq-*`` headers, stamped with the time now."""
        headers: dict[str, Any] = {
            Header.REASON: self.reason,
            Header.ATTEMPTS: self.attempts,
            Header.DEAD_LETTERED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
            Header.QUEUE: self.queue,
        }
        if self.exception_type is not None:
            headers[Header.EXCEPTION_TYPE] = self.exception_type
        if self.exception_message is not None:
            headers[Header.EXCEPTION_MESSAGE] = self.exception_message[:_MAX_MESSAGE]
        return headers


def failure_headers(
    broker: Any, proxy: Any, exception: BaseException | None, *, queue: str, capture: bool
) -> dict[str, Any]:
    """Headers for a message Dramatiq failed (``message.failed``) after handing it to the worker."""
    skipped = isinstance(exception, SkipMessage)
    thrown = exception is not None and not skipped and is_thrown(broker, proxy, exception)
    retries = _delivered_retries(proxy)
    ran = exception is None or not isinstance(exception, ActorNotFound | SkipMessage)
    shown = exception is not None and not skipped
    return DeadLetterFacts(
        reason=dead_letter_reason(exception, skipped=skipped, thrown=thrown),
        queue=queue,
        # The retries made before this delivery, plus this attempt unless the actor never ran (skipped, unknown).
        attempts=retries + (1 if ran else 0),
        exception_type=qualified_name(exception) if shown and exception is not None else None,
        exception_message=shareable_text(exception, capture=capture) if shown and exception is not None else None,
    ).headers()


def envelope_headers(problem: str, *, queue: str, undecodable: bool) -> dict[str, Any]:
    """Headers for a delivery refused before Dramatiq saw it: a broken envelope or a body that is not a message."""
    return DeadLetterFacts(
        reason="undecodable" if undecodable else "invalid_envelope",
        queue=queue,
        attempts=0,
        exception_message=problem,  # names types and the queue, never argument values
    ).headers()


def publish_dead_letter(broker: Any, queue: str, body: bytes, headers: dict[str, Any], properties: Any) -> None:
    """Publish ``body`` to the XQ of ``queue``, confirmed, with the delivery's ``properties``' headers and ours.

    Raises:
        ConnectionClosed: not published; the caller nacks instead (RabbitMQ dead-letters it without headers).
    """
    delivered = getattr(properties, "headers", None)
    priority = getattr(properties, "priority", None)
    publish_confirmed(
        broker,
        xq_name(q_name(queue)),
        body,
        headers={**delivered, **headers} if isinstance(delivered, dict) else headers,
        priority=priority if isinstance(priority, int) else None,
    )
