"""The email actors' shape: one ``email`` queue, rate limited across workers, deferred (not failed) while SMTP is
down, a redelivered email marked as a duplicate.

When the SMTP circuit is open or the rate limit is reached, the message is re-sent with a delay and this
delivery ends successfully: the email is late, not lost, and it does not burn a retry. Orders keep flowing
on their own queues meanwhile. :func:`email_actor` builds each email step from the service call that sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import structlog

from actors import bootstrap
from actors.payload_actor import STEP_OPTIONS, payload_actor
from actors.payloads import Payload
from actors.span_marks import mark_deferred, mark_duplicate
from services.breaker import CircuitOpen

__all__ = ["RATE_LIMIT_DELAY_MS", "deliver_email", "email_actor"]

PayloadT = TypeVar("PayloadT", bound=Payload)

RATE_LIMIT_DELAY_MS = 1_000
_log = structlog.get_logger(__name__)


def email_actor(
    model: type[PayloadT], actor_name: str, send: Callable[[bootstrap.Dependencies, PayloadT], bool], doc: str
) -> dramatiq.Actor[[dict[str, Any]], None]:
    """An actor on the ``email`` queue taking a ``model`` payload: ``send(dependencies, payload)`` sends the email
    and returns False when it had been sent already (a redelivery), which marks the delivery a duplicate."""

    def deliver(payload: dict[str, Any]) -> None:
        parsed = model.parse(payload)
        deliver_email(actor, payload, lambda deps: mark_duplicate(not send(deps, parsed)))

    deliver.__name__ = deliver.__qualname__ = actor_name
    deliver.__doc__ = doc
    actor: dramatiq.Actor[[dict[str, Any]], None] = payload_actor(
        model, actor_name=actor_name, queue_name="email", time_limit=60_000, **STEP_OPTIONS
    )(deliver)
    return actor


def deliver_email(
    actor: dramatiq.Actor[Any, Any], payload: dict[str, Any], send: Callable[[bootstrap.Dependencies], None]
) -> None:
    """Run ``send`` under the email rate limit and circuit breaker, deferring the message when either says wait."""
    deps = bootstrap.dependencies()
    with deps.email_limiter.acquire(raise_on_failure=False) as acquired:
        if acquired:
            try:
                send(deps)
            except CircuitOpen as exc:
                _defer(actor, payload, "smtp_circuit_open", max(int(exc.retry_after * 1000), 100))
    if not acquired:
        _defer(actor, payload, "rate_limited", RATE_LIMIT_DELAY_MS)


def _defer(actor: dramatiq.Actor[Any, Any], payload: dict[str, Any], reason: str, delay_ms: int) -> None:
    mark_deferred(reason, delay_ms)
    _log.info("email_deferred", reason=reason, delay_ms=delay_ms)
    actor.send_with_options(args=(payload,), delay=delay_ms)
