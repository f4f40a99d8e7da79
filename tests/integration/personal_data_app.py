"""The worker app of tests/integration/test_personal_data.py: our production broker, and an actor failing each way.

Each actor takes an email address and fails with it in the exception's text: an error retried then dead-lettered
(inside a span the SDK records the exception on), a time limit, an exception in ``throws``.
"""

from __future__ import annotations

import time

import dramatiq
from opentelemetry import trace

from actors import broker  # the production broker, logging and tracing, configured from the environment
from services.errors import PermanentError

__all__ = ["QUEUE", "broker", "fails_twice", "refused", "too_slow"]

QUEUE = "personal_data"
_tracer = trace.get_tracer(__name__)


@dramatiq.actor(queue_name=QUEUE, max_retries=1, min_backoff=10, max_backoff=20)
def fails_twice(email: str) -> None:
    with _tracer.start_as_current_span("mail customer"):  # the SDK records the exception on this span
        raise RuntimeError(f"cannot mail {email}")


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=300)
def too_slow(email: str) -> None:
    time.sleep(5)  # interrupted by Dramatiq's TimeLimit after 0.3 s


@dramatiq.actor(queue_name=QUEUE, throws=(PermanentError,))
def refused(email: str) -> None:
    raise PermanentError(f"{email} unsubscribed")
