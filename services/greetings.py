"""A sample use case: compose a greeting. It stands in for the real domain until the order service lands."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from opentelemetry import trace

__all__ = ["greet"]

_tracer = trace.get_tracer(__name__)
_log = structlog.get_logger(__name__)


def greet(name: str, *, work_ms: int = 0, sleep: Callable[[float], None] = time.sleep) -> str:
    """Compose a greeting for ``name``, after ``work_ms`` of simulated work.

    Args:
        name: who to greet; must not be blank.
        work_ms: milliseconds of simulated work (lets tests and demos hold a message in flight).
        sleep: the clock's sleep, passed in so tests need not wait.

    Returns:
        The greeting.

    Raises:
        ValueError: if ``name`` is blank.
    """
    with _tracer.start_as_current_span("compose greeting"):
        if not name.strip():
            raise ValueError("name must not be blank")
        if work_ms:
            sleep(work_ms / 1000)
        greeting = f"Hello, {name}!"
        _log.info("greeting_composed", length=len(greeting))
        return greeting
