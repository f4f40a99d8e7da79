"""How the email actors send: rate limited across workers, and deferred (not failed) while SMTP is down.

When the SMTP circuit is open or the rate limit is reached, the message is re-sent with a delay and this
delivery ends successfully: the email is late, not lost, and it does not burn a retry. Orders keep flowing
on their own queues meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
import structlog

from actors import bootstrap
from actors.span_marks import mark_deferred
from services.breaker import CircuitOpen

__all__ = ["RATE_LIMIT_DELAY_MS", "deliver_email"]

RATE_LIMIT_DELAY_MS = 1_000
_log = structlog.get_logger(__name__)


def deliver_email(actor: dramatiq.Actor[Any, Any], payload: dict[str, Any], send: Callable[[], None]) -> None:
    """Run ``send`` under the email rate limit and circuit breaker, deferring the message when either says wait."""
    with bootstrap.dependencies().email_limiter.acquire(raise_on_failure=False) as acquired:
        if acquired:
            try:
                send()
            except CircuitOpen as exc:
                _defer(actor, payload, "smtp_circuit_open", max(int(exc.retry_after * 1000), 100))
    if not acquired:
        _defer(actor, payload, "rate_limited", RATE_LIMIT_DELAY_MS)


def _defer(actor: dramatiq.Actor[Any, Any], payload: dict[str, Any], reason: str, delay_ms: int) -> None:
    mark_deferred(reason, delay_ms)
    _log.info("email_deferred", reason=reason, delay_ms=delay_ms)
    actor.send_with_options(args=(payload,), delay=delay_ms)
