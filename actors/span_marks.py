"""Business outcomes an actor records on its process span."""

from __future__ import annotations

from opentelemetry import trace

from observability import semconv

__all__ = ["DUPLICATE", "mark_deferred", "mark_duplicate"]

DUPLICATE = semconv.DUPLICATE


def mark_duplicate(duplicate: bool) -> None:
    """Say on the process span that this delivery changed nothing (a redelivery, replay or second worker)."""
    if duplicate:
        trace.get_current_span().set_attribute(DUPLICATE, True)


def mark_deferred(reason: str, delay_ms: int) -> None:
    """Say on the process span that the work was re-sent for later, and why."""
    span = trace.get_current_span()
    span.set_attribute(semconv.DEFERRED, reason)
    span.set_attribute(semconv.DEFERRED_MS, delay_ms)
